"""``voxmesh generate``: meshes from speech with a trained generator."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os

import numpy as np

from voxmesh.commands.arguments import check_file_name, check_local_output
from voxmesh.models.baselines import BiasedDecoderModel
from voxmesh.models.generation import MotionGenerator, generate_for_split
from voxmesh.models.generators import Sampling
from voxmesh.pipelines.ingest.audio import load_audio
from voxmesh.pipelines.ingest.probe import MediaError
from voxmesh.schemas import decode_npy_file, storage
from voxmesh.schemas.errors import ConfigError

log = logging.getLogger(__name__)

HELP = "meshes from speech with a trained generator"
DESCRIPTION = """Generate mesh sequences from speech: for one audio file (--audio, with the target speaker's
reference meshes) or for every clip of a dataset split (--data), N samples each."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a generator run's last.pt")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--audio", help="a speech file (any format FFmpeg reads)")
    source.add_argument("--data", help="a voxmesh dataset: generate for every clip of --split")
    parser.add_argument("--split", default="test", help="with --data (default test)")
    parser.add_argument("--reference", default=None, help="with --audio: the target speaker's (T,V,3) mesh .npy")
    parser.add_argument("--out", required=True, help="the .npy to write (--audio) or a folder (--data)")
    parser.add_argument("--samples", type=int, default=1, help="samples per input (default 1)")
    parser.add_argument("--temperature", type=float, default=1.0, help="0 picks the most likely codes")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default 1: off)")
    parser.add_argument("--average", action="store_true", help="with --audio: write the mean of the samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the model runs (default cpu; cuda draws other samples for the same seed)")


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    sampling = Sampling(temperature=args.temperature, top_p=args.top_p)
    generator = MotionGenerator(args.checkpoint, args.device)
    changed = [f"--{field.name.replace('_', '-')}" for field in dataclasses.fields(Sampling)
               if getattr(sampling, field.name) != getattr(Sampling(), field.name)]
    if changed and isinstance(generator.model, BiasedDecoderModel):  # FaceFormer, CodeTalker: one motion per input
        log.warning("%s: %s is deterministic, so %s %s no effect (only probabilistic samples its codes)",
                    args.checkpoint, generator.config.kind, " and ".join(changed), "has" if len(changed) == 1 else "have")
    if args.data:
        summary = generate_for_split(generator, args.data, args.split, args.out, args.samples, sampling, args.seed)
        print(f"generated {summary['clips']} clips x {args.samples} samples into {args.out}")
        return 0
    reference = decode_npy_file(args.reference) if args.reference else None
    # the checkpoint's own vertex count (a FLAME topology is not registered in this process)
    n_vertices = generator.stats.motion_mean.numel() // 3
    if reference is not None and (reference.ndim != 3 or reference.shape[1:] != (n_vertices, 3) or not len(reference)):
        raise ConfigError(f"--reference {args.reference} holds {reference.shape}; expected the target speaker's "
                          f"meshes (T, {n_vertices}, 3) in the checkpoint's topology {generator.stats.topology}")
    try:
        audio = load_audio(args.audio, own_clock=True).samples
    except MediaError as error:
        raise ConfigError(f"{error}; give a speech file FFmpeg can read") from None
    meshes = generator(audio, reference, samples=args.samples, sampling=sampling, seed=args.seed)
    np.save(storage.local_file_to_write(args.out), meshes.mean(0) if args.average else meshes)
    print(f"wrote {args.out}: {'mean of ' if args.average else ''}{len(meshes)} sample(s) of {meshes.shape[1]} frames")
    return 0


def check_arguments(args: argparse.Namespace) -> None:
    """ConfigError, one line naming the option, for values that could only fail or mislead."""
    check_local_output(args.out, "--out")
    if args.samples < 1:
        raise ConfigError(f"--samples must be 1 or more (got {args.samples})")
    if args.temperature < 0:
        raise ConfigError(f"--temperature must be 0 or more (got {args.temperature})")
    if not 0 < args.top_p <= 1:
        raise ConfigError(f"--top-p must be above 0 and at most 1 (got {args.top_p})")
    if args.data and (args.average or args.reference):
        raise ConfigError("--average and --reference are for --audio; with --data each clip takes its reference "
                          "from another clip of its speaker")
    if args.data and os.path.isdir(args.out):
        earlier = [name for name in os.listdir(args.out) if name.endswith(".npy") or name == "generation.json"]
        if earlier:
            # new predictions would sit among the earlier ones, and eval would score them together
            raise ConfigError(f"--out {args.out} already holds {len(earlier)} prediction file(s) (e.g. "
                              f"{sorted(earlier)[0]}); give a new folder or empty this one")
    if args.audio:
        check_file_name(args.out, ".npy", "--out")
