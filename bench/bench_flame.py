"""Benchmark of the FLAME fitter (not a test; figures go in the README): frames per second for a
25 fps, 10 s track (250 frames, one batch), on CPU and on CUDA when present.

FLAME cannot be shipped, so the model is synthetic with FLAME's sizes (5023 vertices, 9976 faces,
300 shape and 100 expression components, 5 joints, 68 landmarks); the fitter's cost depends on
those sizes, not on the values. Usage: python bench/bench_flame.py [--frames 250]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from flame_synthetic import synthetic_flame  # noqa: E402

from voxmesh.recon.flame import FitSettings, FlameModel, fit_flame  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=250)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "flame.npz")
        np.savez(path, **synthetic_flame(n_vertices=5023, n_shape=300, n_expression=100))
        report = {"frames": args.frames, "batch": args.frames, "lbfgs_iterations": FitSettings().steps,
                  "torch_threads": torch.get_num_threads()}
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        for device in devices:
            model = FlameModel.load(path).to(device)
            rng = np.random.default_rng(0)
            with torch.no_grad():
                expression = torch.tensor(0.5 * rng.standard_normal((args.frames, 100)), dtype=torch.float32, device=device)
                targets = model.landmarks(model(torch.zeros(300, device=device), expression,
                                                torch.zeros(args.frames, 3, device=device))).cpu().numpy()
            fit_flame(model, targets[:10], FitSettings(steps=5))  # warm-up
            start = time.perf_counter()
            fit = fit_flame(model, targets)
            if device == "cuda":
                torch.cuda.synchronize()
            wall = time.perf_counter() - start
            report[device] = {"seconds": round(wall, 2), "fps": round(args.frames / wall, 1),
                              "landmark_rmse": round(fit.landmark_rmse, 6),
                              "name": torch.cuda.get_device_name() if device == "cuda" else "cpu"}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
