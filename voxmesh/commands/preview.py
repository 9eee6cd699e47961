"""``voxmesh preview``: render one sample's meshes beside its source crop, with its audio."""

from __future__ import annotations

import argparse
import os

from voxmesh.pipelines.dataset.preview import write_preview
from voxmesh.schemas.errors import ConfigError

HELP = "render a sample's meshes beside its source, with its audio"
DESCRIPTION = """Write an mp4 of one sample: its shaded meshes beside the face crop of its source video,
with the sample's speech as the sound track."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", metavar="DATASET", help="the folder written by `voxmesh build`")
    parser.add_argument("key", help="the sample key (see manifest.parquet)")
    parser.add_argument("-o", "--out", required=True, help="the mp4 to write")


def run(args: argparse.Namespace) -> int:
    if not args.out.endswith(".mp4") or os.path.isdir(args.out):
        raise ConfigError(f"-o {args.out}: give the .mp4 file to write")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    print(f"preview: {write_preview(args.output, args.key, args.out)}")
    return 0
