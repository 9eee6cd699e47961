"""The ``voxmesh`` command line: build, validate, demo."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from voxmesh.pipelines.build import BuildConfig, local_pipeline_args, run_build
from voxmesh.pipelines.clips import ClipRules
from voxmesh.pipelines.inputs import SplitFractions
from voxmesh.recon import BackendUnavailable
from voxmesh.schemas import validate_dataset


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxmesh", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="videos -> validated WebDataset shards (Apache Beam)",
                                epilog="Unrecognised options go to Beam, e.g. --runner=DataflowRunner ...; "
                                       "without them the build runs locally on all cores.")
    build.add_argument("--input", required=True, help="a folder of videos (searched recursively) or a glob")
    build.add_argument("--output", required=True, help="output folder (must be empty unless --resume)")
    _add_build_options(build)

    validate = commands.add_parser("validate", help="check a built dataset; exit 1 with one line per problem")
    validate.add_argument("output", help="the folder written by `voxmesh build`")

    stats = commands.add_parser("stats", help="text summary and an HTML report with plots of a built dataset")
    stats.add_argument("output", help="the folder written by `voxmesh build`")
    stats.add_argument("--report", default=None, help="report folder (default OUT/report)")

    preview = commands.add_parser("preview", help="render a sample's meshes beside its source, with its audio")
    preview.add_argument("output", help="the folder written by `voxmesh build`")
    preview.add_argument("key", help="the sample key (see manifest.parquet)")
    preview.add_argument("-o", "--out", required=True, help="the mp4 to write")

    demo = commands.add_parser("demo", help="generate a synthetic input, build and validate a small dataset")
    demo.add_argument("--output", default="out/demo", help="folder for the generated input and the dataset")
    demo.add_argument("--workers", type=int, default=None, help="local worker processes (default: all cores)")
    return parser


def _add_build_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="mediapipe", help="reconstruction backend (default: mediapipe)")
    parser.add_argument("--min-clip-seconds", type=float, default=ClipRules.min_seconds)
    parser.add_argument("--max-clip-seconds", type=float, default=ClipRules.max_seconds)
    parser.add_argument("--min-confidence", type=float, default=ClipRules.min_confidence)
    parser.add_argument("--max-av-offset", type=int, default=ClipRules.max_av_offset,
                        help="frames; clips whose estimated audio-visual offset is larger are flagged")
    parser.add_argument("--inputs-per-shard", type=int, default=BuildConfig.inputs_per_shard)
    parser.add_argument("--split-fractions", default="0.9,0.05,0.05", metavar="TRAIN,VAL,TEST",
                        help="speaker-hash split fractions, for inputs whose listing gives no split")
    parser.add_argument("--workers", type=int, default=None, help="local worker processes (default: all cores)")
    parser.add_argument("--resume", action="store_true", help="keep committed shards and build the rest")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args, beam_args = _build_parser().parse_known_args(argv)
    if beam_args and args.command != "build":
        print(f"voxmesh {args.command}: unrecognised arguments: {' '.join(beam_args)}", file=sys.stderr)
        return 2
    if args.command == "build":
        return _build(args, beam_args)
    if args.command == "validate":
        return _validate(args.output)
    if args.command == "stats":
        return _stats(args.output, args.report)
    if args.command == "preview":
        return _preview(args.output, args.key, args.out)
    from voxmesh.pipelines.demo import run_demo
    return run_demo(args.output, args.workers)


def _build(args, beam_args: list[str]) -> int:
    try:
        config = BuildConfig(
            input=args.input, output=args.output, backend=args.backend, inputs_per_shard=args.inputs_per_shard,
            rules=ClipRules(min_seconds=args.min_clip_seconds, max_seconds=args.max_clip_seconds,
                            min_confidence=args.min_confidence, max_av_offset=args.max_av_offset),
            splits=SplitFractions(*(float(f) for f in args.split_fractions.split(","))),
            resume=args.resume)
        summary = run_build(config, beam_args or local_pipeline_args(args.workers), progress=True)
    except (BackendUnavailable, FileExistsError, ValueError, TypeError) as error:
        print(f"voxmesh build: {error}", file=sys.stderr)
        return 2
    print_summary(summary, args.output)
    return 0


def print_summary(summary: dict, output: str) -> None:
    print(f"inputs: {summary['inputs']} ({summary['inputs_with_clips']} with clips, "
          f"{summary['inputs_failed']} failed)")
    print(f"clips: {summary['clips']} ({summary['hours'] * 3600:.1f} s, {summary['speakers']} speakers) "
          f"in {summary['shards']} shards; by split: {json.dumps(summary['clips_by_split'])}")
    reasons = ", ".join(f"{k}={v}" for k, v in summary["failures_by_reason"].items()) or "none"
    print(f"failures by reason: {reasons}")
    print(f"output: {os.path.abspath(output)}")


def _validate(output: str) -> int:
    problems, counts = validate_dataset(output)
    for problem in problems:
        print(problem)
    print(f"checked {counts['shards']} shards, {counts['samples']} samples: "
          f"{len(problems)} problem{'s' if len(problems) != 1 else ''}", file=sys.stderr)
    return 1 if problems else 0


def _stats(output: str, report_dir: str | None) -> int:
    from voxmesh.pipelines.report import summarize, write_report
    try:
        summary = summarize(output)
    except OSError as error:
        print(f"voxmesh stats: {error}; is {output} a voxmesh output?", file=sys.stderr)
        return 2
    for name, value in summary.items():
        print(f"{name}: {json.dumps(value)}")
    print(f"report: {write_report(output, report_dir)}")
    return 0


def _preview(output: str, key: str, out_path: str) -> int:
    from voxmesh.pipelines.preview import write_preview
    try:
        print(f"preview: {write_preview(output, key, out_path)}")
    except (KeyError, OSError) as error:
        print(f"voxmesh preview: {error.args[0] if isinstance(error, KeyError) else error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
