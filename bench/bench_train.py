"""Training throughput (windows per second) of every model, and whether the loader keeps up.

For each model, in one run on the same data: the loader alone (batches of windows read, decoded,
cut and paired from the shards), the training step alone (forward, backward and optimizer step on
one batch held in memory), and the whole ``voxmesh train`` loop. The loader is not the bottleneck
when its rate is well above the step's.

    python bench/bench_train.py [--data DATASET] [--steps 100] [--device cpu|cuda]

Without --data it builds one from the demo input and the real test clips (2-second clips).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import torch

from voxmesh.cli import main as voxmesh
from voxmesh.models.audio import audio_features
from voxmesh.models.checkpoint import build_model, load_checkpoint
from voxmesh.models.config import RunConfig, load_config
from voxmesh.models.data import make_loader, training_stream
from voxmesh.models.normalization import Stats
from voxmesh.models.training import mixed_precision, prepare_batch, train
from voxmesh.pipelines.demo import make_demo_input

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "models", "configs")
MODELS = ("rvq", "vq", "probabilistic", "codetalker", "faceformer")  # each model's stage 1 before it
STAGE1 = {"probabilistic": "rvq", "codetalker": "vq"}  # the example config a generator's stage 1 trains with
MEDIA = os.environ.get("VOXMESH_TEST_MEDIA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "media"))


def build_dataset(folder: str) -> str:
    inputs, output = os.path.join(folder, "input"), os.path.join(folder, "dataset")
    if os.path.isfile(os.path.join(output, "dataset.json")):
        return output
    shutil.rmtree(folder, ignore_errors=True)
    make_demo_input(os.path.join(inputs, "demo"))
    for name in sorted(os.listdir(MEDIA)) if os.path.isdir(MEDIA) else []:
        if name.endswith(".mp4"):
            shutil.copy(os.path.join(MEDIA, name), inputs)
    assert voxmesh(["build", "--input", inputs, "--output", output, "--max-clip-seconds", "2",
                    "--min-clip-seconds", "1", "--split-fractions", "1,0,0", "--shard-max-samples", "4"]) == 0
    return output


def loader_rate(config: RunConfig, batches: int) -> float:
    loader = iter(make_loader(training_stream(config.data), config.data))
    next(loader)
    started = time.perf_counter()
    for _ in range(batches):
        next(loader)
    return batches * config.data.batch_size / (time.perf_counter() - started)


def step_rate(config: RunConfig, steps: int) -> float:
    """Forward, backward and optimizer step on one batch held in memory (features included)."""
    last = load_checkpoint(os.path.join(config.out, "last.pt"))
    device = torch.device(config.train.device)
    stats = Stats.from_dict(last["stats"]).to(device)
    model = build_model(config, stats).to(device).train()
    model.load_state_dict(last["model"])
    features = audio_features(config.data.audio_model).to(device)
    raw = next(iter(make_loader(training_stream(config.data), config.data)))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def one_step():
        with mixed_precision(device, config.train.amp):
            loss, _ = model(prepare_batch(raw, features, stats, device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    one_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        one_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * config.data.batch_size / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", default="out/bench_train")
    args = parser.parse_args()
    dataset = args.data or build_dataset(args.work)
    runs = tempfile.mkdtemp(prefix="bench_train_")
    tokenizers: dict[str, str] = {}
    results = {"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
               "threads": torch.get_num_threads(), "workers": args.workers}
    for name in MODELS:
        out = os.path.join(runs, name)
        overrides = [f"data.dataset={dataset}", f"out={out}", f"train.steps={args.steps}", f"data.workers={args.workers}",
                     f"train.device={args.device}", f"train.log_every={args.steps}", "train.warmup=10"]
        if name in STAGE1:
            overrides.append(f"tokenizer_checkpoint={tokenizers[STAGE1[name]]}")
        config = load_config(os.path.join(CONFIGS, f"{name}.toml"), overrides)
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        train(config, log=lambda line: None)
        loop_seconds = time.perf_counter() - started
        tokenizers[name] = os.path.join(out, "last.pt")
        config = RunConfig.from_dict(load_checkpoint(tokenizers[name])["config"])  # with the tokenizer's settings
        with open(os.path.join(out, "log.jsonl")) as log:
            last_entry = json.loads(log.readlines()[-1])
        results[name] = {
            "train_loop_windows_per_s": round(last_entry["windows_per_s"], 1),
            "train_loop_seconds_incl_setup": round(loop_seconds, 1),
            "step_alone_windows_per_s": round(step_rate(config, args.steps // 2), 1),
            "loader_alone_windows_per_s": round(loader_rate(config, args.steps // 2), 1),
        }
        if args.device == "cuda":  # the loop's and the step bench's, which holds a second model
            results[name]["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
        print(name, json.dumps(results[name]), flush=True)
    print(json.dumps(results, indent=1))
    shutil.rmtree(runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
