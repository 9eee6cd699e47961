"""Benchmark of DECA's batches across runs (not a test; figures go in the README), in one run on
the same frames: the ``deca`` backend through the pipeline's ``iter_tracks`` (crop, DECA, results
spooled per run, tracks) on a video of short runs of the dominant face (shot cuts every
``--run-frames`` frames), with batches of up to ``--chunk`` crops that cross run boundaries
(``frames_independent``, the default for DECA) and with batches that stop at each run (as a
backend with tracking state gets them). Frames are real (the first ones of a shared clip,
repeated as needed, else the bundled photograph) with a fixed face box; DECA has random weights
with the released checkpoint's exact shapes (``tests/deca_synthetic.py``) and decodes to a
synthetic FLAME-format model of FLAME's sizes (5023 vertices), so the compute is the real one.
Both modes run once untimed first (warm-up of every batch shape). The last line is ``deca_fps_across_runs=A deca_fps_per_run=P
device=D frames=N``.
Usage: python bench/bench_deca_batches.py [--frames 256] [--run-frames 10] [--chunk 64] [--short]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from deca_synthetic import random_checkpoint  # type: ignore[import-not-found]  # noqa: E402
from flame_synthetic import synthetic_flame  # type: ignore[import-not-found]  # noqa: E402

from voxmesh.pipelines.ingest.faces import TrackRules  # noqa: E402
from voxmesh.pipelines.ingest.process import iter_tracks  # noqa: E402
from voxmesh.pipelines.ingest.tracking import TrackedFrame  # noqa: E402
from voxmesh.recon.deca import DecaBackend  # noqa: E402

BOX = np.array([120.0, 140.0, 425.0, 445.0])  # around the face of the shared clip's first frames (512 x 512)


def media_frames(folder: str, n_frames: int) -> np.ndarray:
    """``n_frames`` real 512 x 512 frames: the first ones of a shared clip, else the photograph."""
    path = os.path.join(folder, "hdtf_aoc_512_25fps.mp4")
    if os.path.isfile(path):
        from voxmesh.pipelines.ingest.frames import iter_images
        frames = np.stack(list(itertools.islice(iter_images(path), n_frames)))
    else:
        from skimage import data
        frames = data.astronaut()[None]
    return np.resize(frames, (n_frames, *frames.shape[1:]))


def short_runs(frames: np.ndarray, run_frames: int) -> list[TrackedFrame]:
    """Every frame tracked, in runs of ``run_frames`` (the last run may be shorter)."""
    n_frames = len(frames)
    return [TrackedFrame(t, image, None, t // run_frames, BOX, ends_run=(t + 1) % run_frames == 0 or t + 1 == n_frames)
            for t, image in enumerate(frames)]


def frames_per_second(backend: DecaBackend, tracked: list[TrackedFrame], chunk: int) -> tuple[float, int]:
    """DECA's frames/s through iter_tracks, and the number of tracks."""
    start = time.perf_counter()
    n_tracks = sum(1 for _ in iter_tracks(iter(tracked), [backend], TrackRules(), chunk, []))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return len(tracked) / (time.perf_counter() - start), n_tracks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--run-frames", type=int, default=10, help="frames per run of the dominant face")
    parser.add_argument("--chunk", type=int, default=64, help="the pipeline's chunk_size (batch size)")
    parser.add_argument("--short", action="store_true", help="a few frames: checks that it runs")
    parser.add_argument("--media", default=os.environ.get("VOXMESH_TEST_MEDIA", "../shared/media"))
    args = parser.parse_args()
    n_frames, chunk = (12, 8) if args.short else (args.frames, args.chunk)
    tracked = short_runs(media_frames(args.media, n_frames), args.run_frames)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, model = os.path.join(tmp, "deca_model.tar"), os.path.join(tmp, "flame.npz")
        random_checkpoint(checkpoint)
        np.savez(model, **synthetic_flame(n_vertices=5023, n_shape=100, n_expression=50))
        backend = DecaBackend(checkpoint, model)
        backend.setup()
        report: dict = {"frames": n_frames, "run_frames": args.run_frames, "chunk": chunk,
                        "device": backend.device, "torch_threads": torch.get_num_threads()}
        modes = (("across_runs", True), ("per_run", False))
        for _, across in modes:  # warm-up: every batch shape of both modes once (the first pass of a
            backend.frames_independent = across  # shape is up to twice as slow on CPU), not timed
            frames_per_second(backend, tracked, chunk)
        for label, across in modes:
            backend.frames_independent = across
            fps, n_tracks = frames_per_second(backend, tracked, chunk)
            report[label] = {"fps": round(fps, 2), "tracks": n_tracks}
    report["ratio"] = round(report["across_runs"]["fps"] / report["per_run"]["fps"], 2)
    if torch.cuda.is_available():
        report["gpu"] = torch.cuda.get_device_name()
        report["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    print(json.dumps(report, indent=1))
    print(f"deca_fps_across_runs={report['across_runs']['fps']} deca_fps_per_run={report['per_run']['fps']} "
          f"device={report['device']} frames={n_frames}")


if __name__ == "__main__":
    main()
