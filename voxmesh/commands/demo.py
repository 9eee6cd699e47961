"""``voxmesh demo``: generate a synthetic input, build and validate a small dataset."""

from __future__ import annotations

import argparse
import os
import shutil

from voxmesh.commands.build import print_summary
from voxmesh.commands.wording import count
from voxmesh.pipelines.build.pipeline import BuildConfig, local_pipeline_args, run_build
from voxmesh.pipelines.demo import make_demo_input
from voxmesh.schemas import validate_dataset

HELP = "generate a synthetic input, build and validate a small dataset"
DESCRIPTION = """A smoke test of the whole build with nothing to download: generate three synthetic talking
videos and one corrupt file under OUTPUT/input, build OUTPUT/dataset, validate it and print the
summary. The input is a warped photograph, not speech data."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="out/demo", help="folder for the generated input and the dataset")
    parser.add_argument("--workers", type=int, default=None, help="local worker processes (default: all cores)")


def run(args: argparse.Namespace) -> int:
    input_dir, dataset_dir = os.path.join(args.output, "input"), os.path.join(args.output, "dataset")
    shutil.rmtree(args.output, ignore_errors=True)
    print(f"generating the synthetic demo input in {input_dir} ...")
    make_demo_input(input_dir)
    config = BuildConfig(input=input_dir, output=dataset_dir, inputs_per_part=1)
    summary = run_build(config, local_pipeline_args(args.workers), progress=True)
    problems, counts = validate_dataset(dataset_dir)
    for problem in problems:
        print(problem)
    print_summary(summary, dataset_dir)
    print(f"validate: {count(counts['samples'], 'sample')} in {count(counts['shards'], 'shard')}, "
          f"{count(len(problems), 'problem')}")
    return 1 if problems else 0
