"""Does a trained generator follow the speech? (not a test; figures go in the README)

Builds shards from the demo input and the real test clips (2-second clips, all in the train
split), trains one model, and prints the lip error (per frame the largest L2 distance over the
lip vertices, mean over frames; motion against motion, template removed) at temperature 0 on
the clips it trained on, with each clip's own audio and with the audio of the clip half the list
away, for the real clips only and for all clips. Usage:

python bench/bench_audio_swap.py MODEL STEPS [--set name=value ...] [--work DIR]

MODEL is probabilistic (after a 300-step RVQ), codetalker (after a 200-step factorized VQ) or
faceformer.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time

import numpy as np
import torch

from voxmesh.cli import main as voxmesh
from voxmesh.metrics import lip_vertex_error
from voxmesh.models.audio import audio_features
from voxmesh.models.checkpoint import load_model
from voxmesh.models.generators import Sampling
from voxmesh.pipelines.build.inputs import SplitFractions
from voxmesh.pipelines.build.packing import ShardLimits
from voxmesh.pipelines.build.pipeline import BuildConfig, local_pipeline_args, run_build
from voxmesh.pipelines.demo import make_demo_input
from voxmesh.pipelines.ingest.clips import ClipRules
from voxmesh.schemas import SAMPLES_PER_FRAME, get_topology, iter_samples, pcm_to_float

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "models", "configs")
REAL_CLIPS = ("hdtf_aoc_512_25fps.mp4", "retalking2_844_25fps.mp4", "retalking4_700_30fps.mp4")
SMALL = ["--set", "data.window=32", "--set", "data.batch_size=8", "--set", "train.log_every=50",
         "--set", "train.warmup=20"]


def build(work: str, media: str) -> str:
    dataset = os.path.join(work, "dataset")
    if os.path.isfile(os.path.join(dataset, "manifest.parquet")):
        return dataset
    inputs = os.path.join(work, "inputs")
    make_demo_input(os.path.join(inputs, "demo"))
    for name in REAL_CLIPS:
        shutil.copy(os.path.join(media, name), os.path.join(inputs, name))
    run_build(BuildConfig(input=inputs, output=dataset, inputs_per_part=1, shard_limits=ShardLimits(max_samples=4),
                          splits=SplitFractions(1.0, 0.0, 0.0), clip_rules=ClipRules(min_seconds=1.0, max_seconds=2.0)),
              local_pipeline_args(2))
    return dataset


def train(work: str, dataset: str, config: str, steps: int, *extra: str) -> str:
    out = os.path.join(work, "runs", f"{config}{steps}")
    started = time.perf_counter()
    assert voxmesh(["train", "--config", os.path.join(CONFIGS, f"{config}.toml"), "--set", f"data.dataset={dataset}",
                    "--set", f"out={out}", "--set", f"train.steps={steps}", *SMALL, *extra]) == 0
    print(f"{config}: {steps} steps in {time.perf_counter() - started:.0f} s", flush=True)
    return out


def swap_errors(run: str, dataset: str, real_only: bool) -> tuple[float, float]:
    model, stats, config = load_model(os.path.join(run, "last.pt"))
    features = audio_features(config.data.audio_model)
    lip_idx = get_topology(stats.topology).lip_idx
    clips = [s for s in iter_samples(dataset) if not real_only or os.path.basename(s.meta.source_uri) in REAL_CLIPS]

    def generate(audio: np.ndarray, n_frames: int) -> np.ndarray:
        waveform = torch.from_numpy(np.resize(audio, n_frames * SAMPLES_PER_FRAME).astype(np.float32))[None]
        with torch.no_grad():
            motion = model.generate(stats.normalize_features(features(waveform, n_frames)), None, 1, Sampling(temperature=0))
        return stats.denormalize_motion(motion[0, 0]).numpy()

    own, swapped = [], []
    for i, sample in enumerate(clips):
        truth = sample.mesh - sample.mesh.mean(0)
        other = clips[(i + len(clips) // 2) % len(clips)]
        own.append(lip_vertex_error(generate(pcm_to_float(sample.audio), len(truth)), truth, lip_idx, squared=False))
        swapped.append(lip_vertex_error(generate(pcm_to_float(other.audio), len(truth)), truth, lip_idx, squared=False))
    return float(np.mean(own)), float(np.mean(swapped))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=["probabilistic", "codetalker", "faceformer"])
    parser.add_argument("steps", type=int)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--work", default="/tmp/voxmesh_audio_swap")
    parser.add_argument("--media", default=os.environ.get("VOXMESH_TEST_MEDIA", "../shared/media"))
    args = parser.parse_args()
    dataset = build(args.work, args.media)
    extra = [item for override in args.overrides for item in ("--set", override)]
    if args.model == "faceformer":
        run = train(args.work, dataset, "faceformer", args.steps, *extra)
    else:
        tokenizer = "rvq" if args.model == "probabilistic" else "vq"
        tokens = train(args.work, dataset, tokenizer, 300 if tokenizer == "rvq" else 200, "--set", "tokenizer.hidden=128")
        run = train(args.work, dataset, args.model, args.steps, "--set", f"tokenizer_checkpoint={tokens}/last.pt", *extra)
    for real_only in (True, False):
        own, swapped = swap_errors(run, dataset, real_only)
        print(f"{args.model} {'real clips' if real_only else 'all clips'}: lip error own audio {own:.4f}, "
              f"other clip's audio {swapped:.4f}, ratio {own / swapped:.3f}")


if __name__ == "__main__":
    main()
