"""Benchmark of the FLAME fitter (not a test; figures go in the README), in one run on the same
synthetic tracks:

  1. MediaPipe Face Mesh alone (``FaceMesh.process`` on frames already in memory, one process):
     frames/s per core, on the first 250 frames of the shared media (or the bundled photograph);
  2. the fitter (``recon/flame_fit.py``) on one torch thread (per core) and on all threads, on a
     10 s track (250 frames) with the model file's 51-point iBUG embedding and with a 105-point
     MediaPipe-layout embedding; CUDA too when present;
  3. the previous fitter (``bench/flame_lbfgs_reference.py``: L-BFGS, full skinning) on the same
     tracks (for the 105 points, through a model file holding that embedding), one thread:
     frames/s and landmark RMSE, the error the current fitter must not exceed.

FLAME cannot be shipped, so the model is synthetic with FLAME's sizes (5023 vertices, 300 shape
and 100 expression components, 5 joints); the fitter's cost depends on those sizes, not on the
values. The tracks carry 0.5% landmark noise. The last line is
``flame_fit_fps=F device=cpu [cuda_fps=G] frames=N`` (F: the fitter per core on CPU with the
51-point embedding; G: the same on CUDA, where present).
Usage: python bench/bench_flame.py [--frames 250] [--short]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
sys.path.insert(0, os.path.dirname(__file__))
from flame_lbfgs_reference import LbfgsSettings, fit_flame_lbfgs  # noqa: E402
from flame_synthetic import synthetic_embedding, synthetic_flame, synthetic_track  # type: ignore[import-not-found]  # noqa: E402

from voxmesh.recon.flame import FitSettings, FlameModel, fit_flame  # noqa: E402
from voxmesh.recon.flame_fit import FlameFit  # noqa: E402


def media_frames(n_frames: int) -> np.ndarray:
    """Real frames: the first ``n_frames`` of a shared clip, else the bundled photograph."""
    folder = os.environ.get("VOXMESH_TEST_MEDIA", "/work/shared/media")
    path = os.path.join(folder, "hdtf_aoc_512_25fps.mp4")
    if os.path.isfile(path):
        from voxmesh.pipelines.ingest.frames import iter_frames
        return np.concatenate(list(iter_frames(path, 64)))[:n_frames]
    from skimage import data
    return np.repeat(data.astronaut()[None], n_frames, axis=0)


def mediapipe_fps(frames: np.ndarray) -> float | None:
    """MediaPipe Face Mesh's frames/s on one core; None where mediapipe is not installed (a GPU
    image that holds only the fitter's needs)."""
    if importlib.util.find_spec("mediapipe") is None:
        print("mediapipe is not installed: no MediaPipe comparison", file=sys.stderr)
        return None
    from voxmesh.recon.mediapipe_mesh import MediaPipeFaceMesh
    backend = MediaPipeFaceMesh()
    backend.setup()
    backend.reconstruct(frames[:20])  # graph start-up is not timed
    backend.reset()
    face_mesh = backend._face_mesh
    start = time.perf_counter()
    for frame in frames:
        face_mesh.process(frame)
    wall = time.perf_counter() - start
    backend.close()
    return len(frames) / wall


def timed(fit, *args) -> tuple[float, FlameFit]:
    start = time.perf_counter()
    result = fit(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=250)
    parser.add_argument("--short", action="store_true", help="a few frames and steps: checks that it runs")
    args = parser.parse_args()
    n_frames = 12 if args.short else args.frames
    threads = torch.get_num_threads()
    report: dict = {"frames": n_frames, "torch_threads": threads}
    mediapipe = mediapipe_fps(media_frames(30 if args.short else 250))
    report["mediapipe_alone_fps_per_core"] = None if mediapipe is None else round(mediapipe, 1)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "flame.npz")
        arrays = synthetic_flame(n_vertices=5023, n_shape=300, n_expression=100, n_landmarks=51)
        np.savez(path, **arrays)
        embedding = synthetic_embedding(arrays)
        model = FlameModel.load(path)
        tracks = {"ibug51": synthetic_track(model, n_frames, noise=0.005)[0],
                  "mp105": synthetic_track(model, n_frames, embedding["lmk_face_idx"], embedding["lmk_b_coords"],
                                           noise=0.005)[0]}
        landmarks = {"ibug51": (None, None), "mp105": (embedding["lmk_face_idx"], embedding["lmk_b_coords"])}
        settings = FitSettings(iterations=2) if args.short else FitSettings()
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        for device in devices:
            on_device = model.to(device)
            for name, targets in tracks.items():
                fit_flame(on_device, targets[:10], FitSettings(iterations=1), *landmarks[name])  # warm-up
                runs = {"all_threads": threads}
                if device == "cpu":
                    runs["one_thread"] = 1
                for label, n_threads in runs.items():
                    torch.set_num_threads(n_threads)
                    wall, fit = timed(fit_flame, on_device, targets, settings, *landmarks[name])
                    report[f"{device}_{name}_{label}"] = {"fps": round(n_frames / wall, 1),
                                                          "landmark_rmse": round(fit.landmark_rmse, 6)}
                torch.set_num_threads(threads)
        model = model.to("cpu")
        # the previous fitter knew only the model file's embedding: give it the 105 points that way
        np.savez(path, **{**arrays, "lmk_faces_idx": embedding["lmk_face_idx"], "lmk_bary_coords": embedding["lmk_b_coords"]})
        models = {"ibug51": model, "mp105": FlameModel.load(path)}
        for name, targets in tracks.items():
            torch.set_num_threads(1)
            wall, fit = timed(fit_flame_lbfgs, models[name], targets, LbfgsSettings(steps=3 if args.short else 100))
            torch.set_num_threads(threads)
            report[f"previous_lbfgs_{name}_one_thread"] = {"fps": round(n_frames / wall, 1),
                                                           "landmark_rmse": round(fit.landmark_rmse, 6)}
    report["spread_of_targets"] = round(float(tracks["ibug51"].std()), 4)
    print(json.dumps(report, indent=1))
    cuda = f" cuda_fps={report['cuda_ibug51_all_threads']['fps']}" if "cuda_ibug51_all_threads" in report else ""
    print(f"flame_fit_fps={report['cpu_ibug51_one_thread']['fps']} device=cpu{cuda} frames={n_frames}")


if __name__ == "__main__":
    main()
