import sys

from voxmesh.cli import main

sys.exit(main())
