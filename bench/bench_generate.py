"""Generation speed of every generator (not a test; figures go in the README): seconds of speech
turned into meshes per second of wall time by ``MotionGenerator``, on the CPU and, where torch
sees one, on CUDA, in one run on the same checkpoints and speech.

Speed does not depend on what the weights learned, so each generator is trained for one step
(its stage 1 too) on a dataset (--data; without it, the one ``bench/bench_train.py`` builds),
with the example configs. Each timing generates ``--samples`` samples of a ``--seconds`` long
speech-like signal, after one untimed warm-up.

    python bench/bench_generate.py [--data DATASET] [--seconds 10] [--samples 1 4]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_train import CONFIGS, MODELS, STAGE1, build_dataset  # noqa: E402

from voxmesh.models.config import load_config  # noqa: E402
from voxmesh.models.generation import MotionGenerator  # noqa: E402
from voxmesh.models.training import train  # noqa: E402
from voxmesh.pipelines.demo import speech_like  # noqa: E402


def one_step_checkpoints(dataset: str, folder: str) -> dict[str, str]:
    """A checkpoint of every generator after one training step (on the CPU)."""
    checkpoints: dict[str, str] = {}
    for name in MODELS:
        out = os.path.join(folder, name)
        overrides = [f"data.dataset={dataset}", f"out={out}", "train.steps=1", "train.device=cpu"]
        if name in STAGE1:
            overrides.append(f"tokenizer_checkpoint={checkpoints[STAGE1[name]]}")
        train(load_config(os.path.join(CONFIGS, f"{name}.toml"), overrides), log=lambda line: None)
        checkpoints[name] = os.path.join(out, "last.pt")
    return {name: checkpoints[name] for name in ("probabilistic", "codetalker", "faceformer")}


def speech_seconds_per_second(generator: MotionGenerator, seconds: float, samples: int) -> float:
    speech = speech_like(seconds, seed=0)
    generator(speech[:16000], samples=samples)  # warm-up
    started = time.perf_counter()
    generator(speech, samples=samples)
    if generator.device.type == "cuda":
        torch.cuda.synchronize()
    return seconds / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--samples", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--work", default="out/bench_train")
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    report: dict = {"seconds_of_speech": args.seconds, "torch_threads": torch.get_num_threads(),
                    "gpu": torch.cuda.get_device_name() if "cuda" in devices else None}
    with tempfile.TemporaryDirectory() as folder:
        checkpoints = one_step_checkpoints(args.data or build_dataset(args.work), folder)
        for name, checkpoint in checkpoints.items():
            for device in devices:
                generator = MotionGenerator(checkpoint, device)
                for samples in args.samples:
                    rate = speech_seconds_per_second(generator, args.seconds, samples)
                    report[f"{name}_{device}_{samples}_samples"] = round(rate, 2)
                    print(f"{name} {device} samples={samples}: {rate:.2f} s of speech per s", flush=True)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
