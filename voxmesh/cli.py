"""The ``voxmesh`` command line: build, validate, stats, preview, train, generate, eval, ..."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from voxmesh.pipelines.build import BuildConfig, local_pipeline_args, run_build
from voxmesh.pipelines.clips import ClipRules
from voxmesh.pipelines.faces import TrackRules
from voxmesh.pipelines.inputs import SplitFractions
from voxmesh.pipelines.packing import ShardLimits
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

    train = commands.add_parser("train", help="train a motion tokenizer or a speech-to-motion generator on shards",
                                epilog="Under torchrun (python -m torch.distributed.run --nproc_per_node N -m voxmesh "
                                       "train ...) every process trains on its own windows.")
    train.add_argument("--config", required=True, help="the run's TOML file (examples: voxmesh/models/configs/)")
    train.add_argument("--set", action="append", default=[], metavar="SECTION.NAME=VALUE",
                       help="override a config value, e.g. --set train.steps=100 (repeatable)")
    train.add_argument("--resume", action="store_true", help="continue from the run folder's last.pt")

    generate = commands.add_parser("generate", help="meshes from speech with a trained generator")
    generate.add_argument("--checkpoint", required=True, help="a generator run's last.pt")
    source = generate.add_mutually_exclusive_group(required=True)
    source.add_argument("--audio", help="a speech file (any format FFmpeg reads)")
    source.add_argument("--data", help="a voxmesh dataset: generate for every clip of --split")
    generate.add_argument("--split", default="test", help="with --data (default test)")
    generate.add_argument("--reference", default=None, help="with --audio: the target speaker's (T,V,3) mesh .npy")
    generate.add_argument("--out", required=True, help="the .npy to write (--audio) or a folder (--data)")
    generate.add_argument("--samples", type=int, default=1, help="samples per input (default 1)")
    generate.add_argument("--temperature", type=float, default=1.0, help="0 picks the most likely codes")
    generate.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default 1: off)")
    generate.add_argument("--average", action="store_true", help="with --audio: write the mean of the samples")
    generate.add_argument("--seed", type=int, default=0)

    evaluate = commands.add_parser("eval", help="metrics of predicted meshes against a dataset's reference samples")
    evaluate.add_argument("--pred", required=True, action="append",
                          help="folder of {key}.npy predictions, (T,V,3) or (N,T,V,3); repeat to compare models")
    evaluate.add_argument("--name", action="append", default=None,
                          help="the table's name for each --pred, in order (default: the folder names)")
    evaluate.add_argument("--ref", required=True, help="the voxmesh dataset folder with the reference samples")
    evaluate.add_argument("--split", default=None, help="only this split of the reference (default: all)")
    evaluate.add_argument("--sync-weights", default=None, help="SyncNet-3D weights for the sync score")
    evaluate.add_argument("--out", default=None, help="write OUT.json and OUT.md (default: the first PRED/results)")

    sync = commands.add_parser("sync", help="the SyncNet-3D lip-sync model: train it, score clips")
    sync_commands = sync.add_subparsers(dest="sync_command", required=True)
    sync_train = sync_commands.add_parser("train", help="train on the samples of a dataset")
    sync_train.add_argument("--data", required=True, help="a voxmesh dataset folder")
    sync_train.add_argument("--out", required=True, help="where to write the weights (.pt)")
    sync_train.add_argument("--split", default="train")
    sync_train.add_argument("--steps", type=int, default=2000)
    sync_score = sync_commands.add_parser("score", help="sync score and offset of every sample of a dataset")
    sync_score.add_argument("--data", required=True)
    sync_score.add_argument("--weights", required=True)
    sync_score.add_argument("--split", default=None)

    commands.add_parser("backends", help="list reconstruction backends: topology, GPU, files, availability")

    convert = commands.add_parser("convert-flame", help="FLAME model pickle -> the .npz the flame backend reads")
    convert.add_argument("model", help="the official FLAME model (.pkl), read with a restricted unpickler")
    convert.add_argument("out", help="the .npz to write")
    convert.add_argument("--landmarks", default=None, help="FLAME's landmark embedding (.npy or .pkl)")
    convert.add_argument("--n-shape", type=int, default=300, help="shape components before the expression ones")

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
    parser.add_argument("--drop-av-offset", action="store_true",
                        help="drop those clips instead (an input left with none fails with reason av_offset)")
    parser.add_argument("--detect-every", type=int, default=TrackRules.detect_every,
                        help="run the face detector on every n-th frame of a shot (1: every frame); the "
                             "reconstruction still checks every frame of a track")
    parser.add_argument("--inputs-per-part", type=int, default=BuildConfig.inputs_per_part,
                        help="inputs one worker processes in one go before they are packed into shards")
    parser.add_argument("--shard-max-samples", type=int, default=ShardLimits.max_samples)
    parser.add_argument("--shard-max-mb", type=float, default=ShardLimits.max_bytes / 2 ** 20,
                        help="MiB; a shard stays under this unless one part alone is larger")
    parser.add_argument("--split-fractions", default="0.9,0.05,0.05", metavar="TRAIN,VAL,TEST",
                        help="speaker-hash split fractions, for inputs whose listing gives no split")
    parser.add_argument("--workers", type=int, default=None, help="local worker processes (default: all cores)")
    parser.add_argument("--resume", action="store_true", help="keep committed parts and shards and build the rest")


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
    if args.command == "eval":
        return _eval(args)
    if args.command == "train":
        return _train(args)
    if args.command == "generate":
        return _generate(args)
    if args.command == "backends":
        return _backends()
    if args.command == "convert-flame":
        return _convert_flame(args)
    if args.command == "sync":
        return _sync(args)
    from voxmesh.pipelines.demo import run_demo
    return run_demo(args.output, args.workers)


def _build(args, beam_args: list[str]) -> int:
    try:
        config = BuildConfig(
            input=args.input, output=args.output, backend=args.backend, inputs_per_part=args.inputs_per_part,
            shard_limits=ShardLimits(args.shard_max_samples, int(args.shard_max_mb * 2 ** 20)),
            rules=ClipRules(min_seconds=args.min_clip_seconds, max_seconds=args.max_clip_seconds,
                            min_confidence=args.min_confidence, max_av_offset=args.max_av_offset,
                            drop_av_offset=args.drop_av_offset),
            tracking=TrackRules(detect_every=args.detect_every),
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
    if os.environ.get("VOXMESH_FLAME_MODEL"):  # FLAME datasets: the topology comes from the user's model
        from voxmesh.recon.flame import FlameModel, flame_topology
        from voxmesh.schemas import register_topology
        register_topology(flame_topology(FlameModel.load(os.environ["VOXMESH_FLAME_MODEL"])))
    problems, counts = validate_dataset(output)
    for problem in problems:
        print(problem)
    print(f"checked {counts['shards']} shards, {counts['samples']} samples: "
          f"{len(problems)} problem{'s' if len(problems) != 1 else ''}", file=sys.stderr)
    return 1 if problems else 0


def _stats(output: str, report_dir: str | None) -> int:
    from voxmesh.pipelines.report import read_tables, summarize, write_report
    try:
        manifest, failures = read_tables(output)
    except OSError as error:
        print(f"voxmesh stats: {error}; is {output} a voxmesh output?", file=sys.stderr)
        return 2
    summary = summarize(manifest, failures)
    for name, value in summary.items():
        print(f"{name}: {json.dumps(value)}")
    print(f"report: {write_report(output, manifest, failures, summary, report_dir)}")
    return 0


def _preview(output: str, key: str, out_path: str) -> int:
    from voxmesh.pipelines.preview import write_preview
    try:
        print(f"preview: {write_preview(output, key, out_path)}")
    except (KeyError, OSError) as error:
        print(f"voxmesh preview: {error.args[0] if isinstance(error, KeyError) else error}", file=sys.stderr)
        return 2
    return 0


def _backends() -> int:
    from voxmesh.recon import backend_classes
    for name, cls in backend_classes().items():
        reason = cls.unavailable_reason()
        files = "; ".join(cls.required_files) or "none"
        print(f"{name}\ttopology {cls.topology_name}\tGPU {'required' if cls.needs_gpu else 'not required'}\t"
              f"files: {files}\t{'available' if reason is None else 'unavailable: ' + reason}")
        if cls.description:
            print(f"\t{cls.description}")
    return 0


def _convert_flame(args) -> int:
    import pickle

    from voxmesh.recon.flame_convert import convert_flame
    try:
        shapes = convert_flame(args.model, args.out, args.landmarks, args.n_shape)
    except (pickle.UnpicklingError, ValueError, OSError, KeyError, StopIteration) as error:
        print(f"voxmesh convert-flame: {args.model}: {error}", file=sys.stderr)
        return 2
    for name, shape in shapes.items():
        print(f"{name}: {shape}")
    print(f"wrote {args.out}; use it with: export VOXMESH_FLAME_MODEL={os.path.abspath(args.out)}")
    return 0


def _eval(args) -> int:
    from voxmesh.metrics.evaluate import evaluate, markdown_table, write_results
    names = args.name or [os.path.basename(os.path.normpath(pred)) for pred in args.pred]
    if len(names) != len(args.pred) or len(set(names)) != len(names):
        print("voxmesh eval: give one distinct --name per --pred", file=sys.stderr)
        return 2
    try:
        table = evaluate(dict(zip(names, args.pred)), args.ref, args.split, args.sync_weights)
    except (FileNotFoundError, NotADirectoryError) as error:
        print(f"voxmesh eval: {error}", file=sys.stderr)
        return 2
    for name, pred in zip(names, args.pred):
        for key in table[name]["predictions_without_reference"]:
            print(f"voxmesh eval: {pred}/{key}.npy has no reference sample in {args.ref}", file=sys.stderr)
    print(markdown_table(table), end="")
    json_path, _ = write_results(table, args.out or os.path.join(args.pred[0], "results"))
    print(f"results: {json_path}")
    return 0


def _train(args) -> int:
    from voxmesh.models.config import load_config
    from voxmesh.pipelines.train import train
    try:
        config = load_config(args.config, args.set)
        losses = train(config, resume=args.resume)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"voxmesh train: {error}", file=sys.stderr)
        return 2
    if losses:
        print(f"trained {config.kind} to step {len(losses)}: loss {losses[0]:.4f} -> {losses[-1]:.4f}; "
              f"run folder: {os.path.abspath(config.out)}")
    return 0


def _generate(args) -> int:
    import numpy as np

    from voxmesh.models.generators import Sampling
    from voxmesh.pipelines.generate import MotionGenerator, generate_for_split
    from voxmesh.pipelines.media import MediaError, load_audio
    from voxmesh.schemas import decode_npy_file
    sampling = Sampling(temperature=args.temperature, top_p=args.top_p)
    try:
        generator = MotionGenerator(args.checkpoint)
        if args.data:
            summary = generate_for_split(generator, args.data, args.split, args.out, args.samples, sampling, args.seed)
            print(f"generated {summary['clips']} clips x {args.samples} samples into {args.out}")
            return 0
        reference = decode_npy_file(args.reference) if args.reference else None
        audio = load_audio(args.audio, video_start=0.0).samples  # an audio file's own clock
        meshes = generator(audio, reference, samples=args.samples, sampling=sampling,
                           seed=args.seed)
    except (MediaError, ValueError, OSError) as error:
        print(f"voxmesh generate: {error}", file=sys.stderr)
        return 2
    np.save(args.out, meshes.mean(0) if args.average else meshes)
    print(f"wrote {args.out}: {'mean of ' if args.average else ''}{len(meshes)} sample(s) of {meshes.shape[1]} frames")
    return 0


def _sync(args) -> int:
    from voxmesh.metrics.syncnet import Clip, av_offset, load_syncnet, save_syncnet, sync_score, train_syncnet
    from voxmesh.schemas import get_topology, iter_samples
    if args.sync_command == "train":
        samples = list(iter_samples(args.data, args.split))
        if not samples:
            print(f"voxmesh sync train: no {args.split} samples in {args.data}", file=sys.stderr)
            return 2
        topology = get_topology(samples[0].meta.topology)
        clips = [Clip.from_arrays(s.mesh, s.audio, topology) for s in samples if s.meta.topology == topology.name]
        model, losses = train_syncnet(clips, len(topology.lip_idx), steps=args.steps, log_every=100)
        save_syncnet(model, topology.name, args.out)
        print(f"trained on {len(clips)} clips, loss {losses[0]:.3f} -> {sum(losses[-50:]) / len(losses[-50:]):.3f}; "
              f"weights: {args.out}")
        return 0
    model, topology = load_syncnet(args.weights)
    for sample in iter_samples(args.data, args.split):
        clip = Clip.from_arrays(sample.mesh, sample.audio, topology)
        offset, confidence = av_offset(model, clip)
        print(f"{sample.key}\tscore {sync_score(model, clip):.3f}\toffset {offset:+d}\tconfidence {confidence:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
