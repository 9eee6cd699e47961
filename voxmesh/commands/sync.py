"""``voxmesh sync``: the SyncNet-3D lip-sync model: train it on a dataset, score its clips."""

from __future__ import annotations

import argparse

from voxmesh.commands.training_data import add_train_verb, samples_of_one_topology
from voxmesh.metrics.syncnet import (
    Clip,
    audio_embeddings,
    lip_sync_error,
    load_syncnet,
    motion_embeddings,
    save_syncnet,
    train_syncnet,
)
from voxmesh.schemas import iter_samples

HELP = "the SyncNet-3D lip-sync model: train it, score clips"
DESCRIPTION = """`sync train` trains SyncNet-3D (an audio and a lip-motion encoder, contrastive over
offsets) on a dataset's samples; `sync score` prints each sample's LSE-D, LSE-C and offset (the
talking-face convention, computed as syncnet_python does)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="sync_command", required=True)
    add_train_verb(verbs, "train on the samples of a dataset")
    score = verbs.add_parser("score", help="LSE-D, LSE-C and offset of every sample of a dataset")
    score.add_argument("--data", required=True, help="a voxmesh dataset folder")
    score.add_argument("--weights", required=True, help="SyncNet-3D weights (`voxmesh sync train --out`)")
    score.add_argument("--split", default=None, help="only this split (default: all)")


def run(args: argparse.Namespace) -> int:
    return _train(args) if args.sync_command == "train" else _score(args)


def _train(args: argparse.Namespace) -> int:
    samples, topology = samples_of_one_topology(args.data, args.split)
    clips = [Clip.from_arrays(s.mesh, s.audio, topology) for s in samples]
    model, losses = train_syncnet(clips, len(topology.lip_idx), steps=args.steps, log_every=100)
    save_syncnet(model, topology.name, args.out)
    print(f"trained on {len(clips)} clips, loss {losses[0]:.3f} -> {sum(losses[-50:]) / len(losses[-50:]):.3f}; "
          f"weights: {args.out}")
    return 0


def _score(args: argparse.Namespace) -> int:
    model, topology = load_syncnet(args.weights)
    for sample in iter_samples(args.data, args.split):
        clip = Clip.from_arrays(sample.mesh, sample.audio, topology)
        sync = lip_sync_error(motion_embeddings(model, clip), audio_embeddings(model, clip))
        print(f"{sample.key}\tLSE-D {sync.distance:.3f}\tLSE-C {sync.confidence:.3f}\toffset {sync.offset:+d}")
    return 0
