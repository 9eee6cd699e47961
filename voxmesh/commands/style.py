"""``voxmesh style``: the speaking-style recognition network that `voxmesh eval` uses."""

from __future__ import annotations

import argparse

from voxmesh.metrics.style import save_style, train_style
from voxmesh.schemas import get_topology, iter_samples
from voxmesh.schemas.errors import MissingFileError

HELP = "the speaking-style recognition network: train it on a split"
DESCRIPTION = """`style train` trains speaker classification from 1-second windows of facial motion on a
dataset's training split; `voxmesh eval --style-weights` reports style matching and the Frechet
distance on its embeddings."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="style_command", required=True)
    train = verbs.add_parser("train", help="train on the samples of a dataset split")
    train.add_argument("--data", required=True, help="a voxmesh dataset folder")
    train.add_argument("--out", required=True, help="where to write the weights (.pt)")
    train.add_argument("--split", default="train")
    train.add_argument("--steps", type=int, default=2000)


def run(args: argparse.Namespace) -> int:
    samples = list(iter_samples(args.data, args.split))
    if not samples:
        raise MissingFileError(f"{args.data}: no {args.split} samples; build the dataset first")
    topology = get_topology(samples[0].meta.topology)
    samples = [s for s in samples if s.meta.topology == topology.name]
    model, losses = train_style([s.mesh for s in samples], [s.meta.speaker for s in samples], topology,
                                steps=args.steps, log_every=100)
    save_style(model, args.out)
    tail = losses[-50:]
    print(f"trained on {len(samples)} clips of {len(model.speakers)} speakers, loss {losses[0]:.3f} -> "
          f"{sum(tail) / len(tail):.3f}; weights: {args.out}")
    return 0
