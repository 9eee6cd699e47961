"""``voxmesh validate``: check a built dataset against schema v1."""

from __future__ import annotations

import argparse
import sys

from voxmesh.schemas import validate_dataset

HELP = "check a built dataset; exit 1 with one line per problem"
DESCRIPTION = """Check every shard, sample and table of a dataset folder against schema v1: member
dtypes and shapes, keys, commit markers, manifest and failures, speaker-disjoint splits, and that
every input is accounted for. Prints one line per problem (`shard: key: what is wrong`)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", help="the folder written by `voxmesh build`")


def run(args: argparse.Namespace) -> int:
    register_user_topologies()
    problems, counts = validate_dataset(args.output)
    for problem in problems:
        print(problem)
    print(f"checked {counts['shards']} shards, {counts['samples']} samples: "
          f"{len(problems)} problem{'s' if len(problems) != 1 else ''}", file=sys.stderr)
    return 1 if problems else 0


def register_user_topologies() -> None:
    """FLAME datasets: their topology comes from the user's own FLAME model."""
    from voxmesh.recon.flame import register_flame_topology_from_environment
    register_flame_topology_from_environment()
