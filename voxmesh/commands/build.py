"""``voxmesh build``: videos -> a validated WebDataset dataset, through Apache Beam."""

from __future__ import annotations

import argparse
import json
import logging
import os

from voxmesh.commands.wording import count
from voxmesh.pipelines.build.inputs import SplitFractions
from voxmesh.pipelines.build.packing import ShardLimits
from voxmesh.pipelines.build.pipeline import BuildConfig, build_pipeline_args, run_build
from voxmesh.pipelines.build.shared_model import SHARE_MODES
from voxmesh.pipelines.dataset.card import DEFAULT_LICENSE
from voxmesh.pipelines.ingest.clips import ClipRules
from voxmesh.pipelines.ingest.faces import TrackRules
from voxmesh.schemas.errors import ConfigError

log = logging.getLogger(__name__)

HELP = "videos -> validated WebDataset shards (Apache Beam)"
DESCRIPTION = """Decode every input video, track faces, reconstruct 3D meshes per frame, cut clips with
their 16 kHz speech and write them as WebDataset shards with manifest.parquet, failures.parquet,
dataset.json and a dataset card. Other options go to Beam (e.g. --runner=DataflowRunner ..., or
--s3_endpoint_url=...); without a --runner the build runs locally on all cores."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True,
                        help="a folder of videos (searched recursively, through links to folders), a glob, "
                             "or a .csv/.parquet listing")
    parser.add_argument("--output", required=True, help="output folder (must be empty unless --resume)")
    parser.add_argument("--backend", default="mediapipe",
                        help="reconstruction backend, or a comma-separated list for paired datasets "
                        "(OUTPUT/<backend>/ each: same clips, audio and splits) (default: mediapipe)")
    parser.add_argument("--backend-option", action="append", default=[], metavar="BACKEND.KEY=VALUE",
                        help="a backend's file or setting, read by every worker (any file system), e.g. "
                             "flame.model=s3://bucket/flame.npz; repeatable")
    parser.add_argument("--share-model", choices=SHARE_MODES, default=BuildConfig.share_model,
                        help="one model per worker machine, shared by its processes: auto (a backend whose frames "
                             "are independent, e.g. deca or fan3d, on a GPU machine), always, never")
    parser.add_argument("--min-clip-seconds", type=float, default=ClipRules.min_seconds)
    parser.add_argument("--max-clip-seconds", type=float, default=ClipRules.max_seconds)
    parser.add_argument("--min-confidence", type=float, default=ClipRules.min_confidence)
    parser.add_argument("--max-av-offset", type=int, default=ClipRules.max_av_offset,
                        help="frames; clips whose estimated audio-visual offset is larger are flagged")
    parser.add_argument("--drop-av-offset", action="store_true",
                        help="drop those clips instead (an input left with none fails with reason av_offset)")
    parser.add_argument("--detect-every", type=int, default=TrackRules.detect_every,
                        help="run the face detector on every n-th frame of a shot (1: every frame); the "
                             "reconstruction still checks every frame of a track")
    parser.add_argument("--short-range-face", type=float, default=TrackRules.short_range_face,
                        help="shots whose face is at least this fraction of the frame's long side are looked at "
                             "with the short-range face detector (cheaper, same checks); 0: full range only")
    parser.add_argument("--inputs-per-part", type=int, default=BuildConfig.inputs_per_part,
                        help="at most this many inputs in one part (what one worker processes in one go)")
    parser.add_argument("--frames-per-part", type=int, default=BuildConfig.frames_per_part,
                        help="a part is closed once its inputs are expected to give this many frames (from a "
                             "listing's duration column or the files' headers); parts are split further "
                             "until every worker has one")
    parser.add_argument("--shard-max-samples", type=int, default=ShardLimits.max_samples)
    parser.add_argument("--shard-max-mb", type=float, default=ShardLimits.max_bytes / 2 ** 20,
                        help="MiB; a shard stays under this unless one part alone is larger")
    parser.add_argument("--split-fractions", default="0.9,0.05,0.05", metavar="TRAIN,VAL,TEST",
                        help="speaker-hash split fractions, for inputs whose listing gives no split")
    parser.add_argument("--workers", type=int, default=None, help="local worker processes (default: all cores)")
    parser.add_argument("--resume", action="store_true", help="keep committed parts and shards and build the rest")
    parser.add_argument("--license", default=DEFAULT_LICENSE,
                        help="licence of the source footage, for the dataset card (an SPDX-like id such as "
                             "cc-by-4.0, or a sentence; default: %(default)r)")


def config_from_args(args: argparse.Namespace) -> BuildConfig:
    """The build config that the command-line options describe; ConfigError for a bad value."""
    try:
        train, val, test = (float(f) for f in args.split_fractions.split(","))
    except ValueError:
        raise ConfigError(f"--split-fractions {args.split_fractions}: expected three numbers, "
                          "e.g. 0.9,0.05,0.05") from None
    for option in ("workers", "inputs_per_part", "frames_per_part"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise ConfigError(f"--{option.replace('_', '-')} must be 1 or more (got {value})")
    return BuildConfig(
        input=args.input, output=args.output, backend=args.backend, inputs_per_part=args.inputs_per_part,
        frames_per_part=args.frames_per_part, min_parts=args.workers or os.cpu_count() or 1,
        shard_limits=ShardLimits(args.shard_max_samples, int(args.shard_max_mb * 2 ** 20)),
        clip_rules=ClipRules(min_seconds=args.min_clip_seconds, max_seconds=args.max_clip_seconds,
                             min_confidence=args.min_confidence, max_av_offset=args.max_av_offset,
                             drop_av_offset=args.drop_av_offset),
        track_rules=TrackRules(detect_every=args.detect_every, short_range_face=args.short_range_face),
        splits=SplitFractions(train, val, test), resume=args.resume, license=args.license,
        backend_options=parse_backend_options(args.backend_option), share_model=args.share_model)


def parse_backend_options(values: list[str]) -> tuple[tuple[str, str], ...]:
    """``BACKEND.KEY=VALUE`` strings as sorted ``("BACKEND.KEY", "VALUE")`` pairs, one per name."""
    pairs: dict[str, str] = {}
    for text in values:
        name, equals, value = text.partition("=")
        backend, dot, key = name.partition(".")
        if not (equals and dot and backend and key and value):
            raise ConfigError(f"--backend-option {text}: expected BACKEND.KEY=VALUE, e.g. flame.model=s3://bucket/flame.npz")
        if name in pairs:
            raise ConfigError(f"--backend-option {name} is given twice")
        pairs[name] = value
    return tuple(sorted(pairs.items()))


def run(args: argparse.Namespace) -> int:
    summary = run_build(config_from_args(args), build_pipeline_args(args.beam_args, args.workers), progress=True)
    print_summary(summary, args.output)
    return 0


def print_summary(summary: dict, output: str) -> None:
    print(f"inputs: {summary['inputs']} ({summary['inputs_with_clips']} with clips, "
          f"{summary['inputs_failed']} failed)")
    print(f"clips: {summary['clips']} ({summary['seconds']:.2f} s, {count(summary['speakers'], 'speaker')}) "
          f"in {count(summary['shards'], 'shard')}; by split: {json.dumps(summary['clips_by_split'])}")
    reasons = ", ".join(f"{k}={v}" for k, v in summary["failures_by_reason"].items()) or "none"
    print(f"failures by reason: {reasons}")
    print(f"output: {output if '://' in output else os.path.abspath(output)}")
    if summary["inputs"] and not summary["clips"]:
        log.warning("no input gave a clip: the failures by reason above say why (details in failures.parquet)")
