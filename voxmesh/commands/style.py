"""``voxmesh style``: the speaking-style recognition network that `voxmesh eval` uses."""

from __future__ import annotations

import argparse

from voxmesh.commands.training_data import add_train_verb, samples_of_one_topology
from voxmesh.metrics.style import save_style, train_style

HELP = "the speaking-style recognition network: train it on a split"
DESCRIPTION = """`style train` trains speaker classification from 1-second windows of facial motion on a
dataset's training split; `voxmesh eval --style-weights` reports style matching and the Frechet
distance on its embeddings."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="style_command", required=True)
    add_train_verb(verbs, "train on the samples of a dataset split")


def run(args: argparse.Namespace) -> int:
    samples, topology = samples_of_one_topology(args.data, args.split)
    model, losses = train_style([s.mesh for s in samples], [s.meta.speaker for s in samples], topology,
                                steps=args.steps, log_every=100)
    save_style(model, args.out)
    tail = losses[-50:]
    print(f"trained on {len(samples)} clips of {len(model.speakers)} speakers, loss {losses[0]:.3f} -> "
          f"{sum(tail) / len(tail):.3f}; weights: {args.out}")
    return 0
