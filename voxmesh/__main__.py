from voxmesh.cli import entry_point

entry_point()
