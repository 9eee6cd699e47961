"""What the verbs that train an evaluation network (``sync train``, ``style train``) share: their
``train`` sub-verb's options and the samples they train on."""

from __future__ import annotations

import argparse

from voxmesh.schemas import Sample, Topology, get_topology, iter_samples
from voxmesh.schemas.errors import MissingFileError


def add_train_verb(verbs, help_text: str) -> argparse.ArgumentParser:
    """The ``train`` sub-verb: ``--data``, ``--out``, ``--split`` (default train), ``--steps``."""
    train = verbs.add_parser("train", help=help_text)
    train.add_argument("--data", required=True, help="a voxmesh dataset folder")
    train.add_argument("--out", required=True, help="where to write the weights (.pt)")
    train.add_argument("--split", default="train", help="the split whose samples it trains on (default: train)")
    train.add_argument("--steps", type=int, default=2000, help="optimizer steps (default: 2000)")
    return train


def samples_of_one_topology(data: str, split: str) -> tuple[list[Sample], Topology]:
    """The split's samples of the first sample's topology (a network is trained on one)."""
    samples = list(iter_samples(data, split))
    if not samples:
        raise MissingFileError(f"{data}: no {split} samples; build the dataset first")
    topology = get_topology(samples[0].meta.topology)
    return [s for s in samples if s.meta.topology == topology.name], topology
