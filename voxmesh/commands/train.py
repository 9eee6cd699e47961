"""``voxmesh train``: train a motion tokenizer or a speech-to-motion generator on a dataset's shards."""

from __future__ import annotations

import argparse
import logging
import math
import os

from voxmesh.commands.arguments import check_local_output
from voxmesh.models.config import load_config
from voxmesh.models.training import train

log = logging.getLogger(__name__)

HELP = "train a motion tokenizer or a speech-to-motion generator on shards"
DESCRIPTION = """Train the model a TOML run config describes (examples: models/configs/) on the shards of a
built dataset. Under torchrun (python -m torch.distributed.run --nproc_per_node N -m voxmesh
train ...) every process trains on its own windows."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the run's TOML file (examples: models/configs/)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.NAME=VALUE",
                        help="override a config value, e.g. --set train.steps=100 (repeatable)")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's last.pt")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.set)
    check_local_output(config.out, f"{args.config}: out")
    losses = train(config, resume=args.resume)
    if losses:
        print(f"trained {config.kind} to step {len(losses)}: loss {losses[0]:.4f} -> {losses[-1]:.4f}; "
              f"run folder: {os.path.abspath(config.out)}")
        if not math.isfinite(losses[-1]):
            log.warning("the loss diverged (%s at step %d): lower train.lr or raise train.warmup, and train into "
                        "a new out", losses[-1], len(losses))
    return 0
