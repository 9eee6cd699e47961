"""Benchmark of the fan3d backend (not a test; figures go in the README): frames per second of
``Fan3D.reconstruct`` on 256x256 face crops, with and without face-alignment's flip averaging, on
CPU and on CUDA when present.

The real weights cannot be downloaded here, so the checkpoints hold random weights of the real
architectures (FAN-4 and ResNetDepth): the compute per frame is the same. Usage:
python bench/bench_fan3d.py [--frames 64] [--forward-frames N]
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
from skimage import data

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from fan3d_synthetic import write_random_fan3d_weights  # noqa: E402

from voxmesh.recon.fan3d import FORWARD_FRAMES, WEIGHTS_ENV, Fan3D  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--forward-frames", type=int, default=0, help="frames per forward pass (default: the backend's)")
    args = parser.parse_args()
    crops = np.repeat(data.astronaut()[None, 0:256, 96:352], args.frames, axis=0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.forward_frames:
        FORWARD_FRAMES[device] = args.forward_frames
    report = {"frames": args.frames, "crop": "256x256", "forward_frames": FORWARD_FRAMES[device],
              "torch_threads": torch.get_num_threads(),
              "device": torch.cuda.get_device_name() if device == "cuda" else "cpu"}
    with tempfile.TemporaryDirectory() as tmp:
        write_random_fan3d_weights(tmp)
        os.environ[WEIGHTS_ENV] = tmp
        for flip in (True, False):
            backend = Fan3D(flip_input=flip)
            backend.setup()
            backend.reconstruct(crops[:FORWARD_FRAMES[device]])  # warm-up
            start = time.perf_counter()
            backend.reconstruct(crops)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            wall = time.perf_counter() - start
            report[f"flip_{str(flip).lower()}"] = {"seconds": round(wall, 2), "fps": round(args.frames / wall, 2)}
            backend.close()
    if device == "cuda":
        report["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
