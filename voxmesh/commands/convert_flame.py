"""``voxmesh convert-flame``: the official FLAME pickle -> the .npz the flame backend reads."""

from __future__ import annotations

import argparse
import os
import pickle

from voxmesh.recon.flame_convert import convert_flame
from voxmesh.schemas.errors import ConfigError, MissingFileError
from voxmesh.schemas.storage import local_file_to_write

HELP = "FLAME model pickle -> the .npz the flame backend reads"
DESCRIPTION = """Read the official FLAME model (a chumpy pickle) with a restricted unpickler that admits only
NumPy/SciPy arrays, and write its arrays as a plain .npz. A pickle that would run code is refused."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the official FLAME model (.pkl), read with a restricted unpickler")
    parser.add_argument("out", help="the .npz to write")
    parser.add_argument("--landmarks", default=None, help="FLAME's landmark embedding (.npy or .pkl)")
    parser.add_argument("--n-shape", type=int, default=300, help="shape components before the expression ones")


def run(args: argparse.Namespace) -> int:
    for path, what in ((args.model, "the official FLAME model (generic_model.pkl)"),
                       (args.landmarks, "FLAME's landmark embedding (landmark_embedding.npy)")):
        if path is not None and not os.path.isfile(path):
            raise MissingFileError(f"{path}: no such file; give {what}, from the FLAME website (flame.is.tue.mpg.de)")
    local_file_to_write(args.out)
    try:
        shapes = convert_flame(args.model, args.out, args.landmarks, args.n_shape)
    except (pickle.UnpicklingError, OSError, KeyError, StopIteration) as error:
        raise ConfigError(f"{args.model}: {error}; give the official FLAME .pkl") from None
    for name, shape in shapes.items():
        print(f"{name}: {shape}")
    if args.landmarks is None:
        print("no --landmarks: the flame and deca backends need FLAME's landmark embedding; convert again with it")
    print(f"wrote {args.out}; use it with: export VOXMESH_FLAME_MODEL={os.path.abspath(args.out)}")
    return 0
