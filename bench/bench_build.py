"""Benchmark of `voxmesh build` against its ceiling (not a test; figures go in the README).

In one run on the same frames:
  1. decode fps per core: PyAV at 25 fps with RGB conversion (and decord, when importable);
  2. the ceiling: MediaPipe Face Mesh alone (``FaceMesh.process`` on frames already in memory) in
     one process (median of three runs), and the same with voxmesh's pose removal (the backend's
     ``reconstruct``); and the bound that decoding alone puts on the ratio,
     decode fps / (decode fps + ceiling fps): the ratio if the pipeline added nothing but one decode;
  3. the same per-video work (``process_input``: decode, audio, reconstruct, cut) in a plain
     ``multiprocessing.Pool`` over all cores, without Beam, to separate Beam's cost from ours, with
     face detection on every frame and on every 5th (the default);
  4. `voxmesh build` end to end over all cores on the shared media repeated to >= 2000 frames.
Ratio = end-to-end fps / (ceiling fps x cores). Usage: python bench/bench_build.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time

import numpy as np

from voxmesh.pipelines.build.pipeline import BuildConfig, local_pipeline_args, run_build
from voxmesh.pipelines.ingest.clips import ClipRules
from voxmesh.pipelines.ingest.faces import FaceDetector, TrackRules
from voxmesh.pipelines.ingest.frames import iter_frames
from voxmesh.pipelines.ingest.item import InputItem
from voxmesh.pipelines.ingest.process import process_input
from voxmesh.recon.mediapipe_mesh import MediaPipeFaceMesh

CLIPS = ("hdtf_aoc_512_25fps.mp4", "retalking2_844_25fps.mp4", "retalking4_700_30fps.mp4")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(function):
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = function()
    return result, time.perf_counter() - wall, cpu_seconds() - cpu


def decode_pyav(paths: list[str]) -> int:
    return sum(len(chunk) for path in paths for chunk in iter_frames(path))


def load_videos(paths: list[str]) -> list[np.ndarray]:
    return [np.concatenate([chunk.copy() for chunk in iter_frames(p)]) for p in paths]


def decode_decord(paths: list[str]) -> int:
    import decord
    n = 0
    for path in paths:
        reader = decord.VideoReader(path, num_threads=1)
        fps = reader.get_avg_fps()
        indices = np.round(np.arange(0, len(reader) / fps, 1 / 25) * fps).astype(int).clip(0, len(reader) - 1)
        n += len(reader.get_batch(list(indices)).asnumpy())
    return n


def ready_backend(videos: list[np.ndarray]) -> MediaPipeFaceMesh:
    """A set-up backend that has already run on 50 frames (graph start-up is not timed)."""
    backend = MediaPipeFaceMesh()
    backend.setup()
    backend.reconstruct(videos[0][:50])
    return backend


def mediapipe_alone(backend: MediaPipeFaceMesh, videos: list[np.ndarray]) -> int:
    for frames in videos:
        backend.reset()
        for frame in frames:
            backend._face_mesh.process(frame)
    return sum(len(v) for v in videos)


def backend_reconstruct(backend: MediaPipeFaceMesh, videos: list[np.ndarray]) -> int:
    for frames in videos:
        backend.reset()
        backend.reconstruct(frames)
    return sum(len(v) for v in videos)


_worker: dict = {}


def _init_worker() -> None:
    _worker["backend"] = MediaPipeFaceMesh()
    _worker["backend"].setup()
    _worker["detector"] = FaceDetector()


def _process(job: tuple[InputItem, int]) -> int:
    item, detect_every = job
    return process_input(item, "train", _worker["backend"], _worker["detector"], ClipRules(),
                         TrackRules(detect_every=detect_every)).n_frames


def median_of_three(function) -> tuple[list, tuple]:
    """All three ``timed`` runs of ``function`` and the median one (this machine is noisy)."""
    runs = [timed(function) for _ in range(3)]
    return runs, sorted(runs, key=lambda run: run[1])[1]


def measure_in_memory(paths: list[str], report: dict) -> int:
    """Decode speed, the Face Mesh ceiling and the backend on frames held in memory (released on
    return); adds the figures to ``report`` and returns the frames in one pass over the media."""
    videos = load_videos(paths)
    n_frames = sum(len(v) for v in videos)
    report["frames_per_pass"] = n_frames
    n, wall, _ = timed(lambda: decode_pyav(paths))
    report["decode_pyav_fps"] = round(n / wall, 1)
    try:
        n, wall, _ = timed(lambda: decode_decord(paths))
        report["decode_decord_fps"] = round(n / wall, 1)
    except ImportError:
        report["decode_decord_fps"] = None
    backend = ready_backend(videos)
    runs, (n, wall, cpu) = median_of_three(lambda: mediapipe_alone(backend, videos))
    report["mediapipe_alone_fps_runs"] = [round(n / run[1], 1) for run in runs]
    report["mediapipe_alone_fps"] = round(n / wall, 1)
    report["mediapipe_alone_cpu_per_wall"] = round(cpu / wall, 2)
    # Even if nothing but one decode were added to Face Mesh, the ratio could not exceed this.
    report["ratio_bound_from_decoding_once"] = round(report["decode_pyav_fps"] /
                                                     (report["decode_pyav_fps"] + report["mediapipe_alone_fps"]), 3)
    n, wall, _ = timed(lambda: backend_reconstruct(backend, videos))
    report["backend_reconstruct_fps"] = round(n / wall, 1)
    backend.close()
    return n_frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--media", default=os.environ.get("VOXMESH_TEST_MEDIA", "../shared/media"))
    parser.add_argument("--repeat", type=int, default=10, help="copies of the media for the end-to-end run")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()
    paths = [os.path.abspath(os.path.join(args.media, c)) for c in CLIPS]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        sys.exit(f"missing media {missing}; pass --media or set VOXMESH_TEST_MEDIA")

    report = {"cores": os.cpu_count(), "workers": args.workers}
    n_frames = measure_in_memory(paths, report)

    items = [InputItem(p, f"copy{k}", "v", str(i)) for k in range(args.repeat) for i, p in enumerate(paths)]
    with multiprocessing.get_context("spawn").Pool(args.workers, initializer=_init_worker) as pool:
        pool.map(_process, [(item, 1) for item in items[:args.workers]])  # start-up outside the timing
        for detect_every in (1, TrackRules.detect_every):
            jobs = [(item, detect_every) for item in items]
            frames, wall, _ = timed(lambda jobs=jobs: sum(pool.map(_process, jobs, chunksize=1)))
            report[f"plain_multiprocessing_detect_every_{detect_every}_fps"] = round(frames / wall, 1)

    with tempfile.TemporaryDirectory() as tmp:
        inputs = os.path.join(tmp, "inputs")
        for copy in range(args.repeat):
            os.makedirs(os.path.join(inputs, f"copy{copy:03d}"))
            for path in paths:
                os.symlink(path, os.path.join(inputs, f"copy{copy:03d}", os.path.basename(path)))
        config = BuildConfig(input=inputs, output=os.path.join(tmp, "out"), inputs_per_part=1)
        summary, wall, _ = timed(lambda: run_build(config, local_pipeline_args(args.workers)))
    frames_in = n_frames * args.repeat
    report["end_to_end_frames"] = frames_in
    report["end_to_end_clips"] = summary["clips"]
    report["end_to_end_seconds"] = round(wall, 2)
    report["end_to_end_fps"] = round(frames_in / wall, 1)
    ceiling = report["mediapipe_alone_fps"] * args.workers
    report["ratio_to_ceiling"] = round(frames_in / wall / ceiling, 3)
    for detect_every in (1, TrackRules.detect_every):
        fps = report[f"plain_multiprocessing_detect_every_{detect_every}_fps"]
        report[f"plain_multiprocessing_detect_every_{detect_every}_ratio"] = round(fps / ceiling, 3)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
