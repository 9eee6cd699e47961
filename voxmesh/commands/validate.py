"""``voxmesh validate``: check a built dataset against schema v1."""

from __future__ import annotations

import argparse
import os
import sys

from voxmesh.commands.wording import count
from voxmesh.schemas import storage, validate_dataset
from voxmesh.schemas.errors import MissingFileError
from voxmesh.schemas.pairing import is_dataset, paired_folders, validate_paired

HELP = "check a built dataset; exit 1 with one line per problem"
DESCRIPTION = """Check every shard, sample and table of a dataset folder against schema v1: member
dtypes and shapes, keys, commit markers, manifest and failures, speaker-disjoint splits, and that
every input is accounted for. Prints one line per problem (`shard: key: what is wrong`). Given the
parent folder of paired datasets (`voxmesh build --backend a,b`), checks each and that they pair
clip for clip (keys, splits, clip boundaries, audio, failures)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", metavar="DATASET",
                        help="the folder written by `voxmesh build` (for several backends: the parent)")


def run(args: argparse.Namespace) -> int:
    if not storage.is_remote(args.output) and not os.path.isdir(args.output):
        what = "is a file, not a folder" if os.path.exists(args.output) else "no such folder"
        raise MissingFileError(f"{args.output}: {what}; pass the folder that `voxmesh build` wrote (its --output)")
    register_user_topologies()
    single = is_dataset(args.output) or not paired_folders(args.output)
    problems, counts = validate_dataset(args.output) if single else validate_paired(args.output)
    for problem in problems:
        print(problem)
    paired = f" in {counts['paired_datasets']} paired datasets" if counts.get("paired_datasets") else ""
    print(f"checked {count(counts['shards'], 'shard')}, {count(counts['samples'], 'sample')}{paired}: "
          f"{count(len(problems), 'problem')}", file=sys.stderr)
    return 1 if problems else 0


def register_user_topologies() -> None:
    """FLAME datasets: their topology comes from the user's own FLAME model."""
    from voxmesh.recon.flame import register_flame_topology_from_environment
    register_flame_topology_from_environment()
