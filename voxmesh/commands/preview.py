"""``voxmesh preview``: render one sample's meshes beside its source crop, with its audio."""

from __future__ import annotations

import argparse

from voxmesh.commands.arguments import check_file_name, check_local_output
from voxmesh.pipelines.dataset.preview import write_preview

HELP = "render a sample's meshes beside its source, with its audio"
DESCRIPTION = """Write an mp4 of one sample: its shaded meshes beside the face crop of its source video,
with the sample's speech as the sound track."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", metavar="DATASET", help="the folder written by `voxmesh build`")
    parser.add_argument("key", help="the sample key (see manifest.parquet)")
    parser.add_argument("-o", "--out", required=True, help="the mp4 to write")


def run(args: argparse.Namespace) -> int:
    check_local_output(args.out, "-o")
    check_file_name(args.out, ".mp4", "-o")
    print(f"preview: {write_preview(args.output, args.key, args.out)}")
    return 0
