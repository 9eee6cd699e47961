"""Benchmark of `voxmesh build` against its ceiling (not a test; figures go in the README).

In one run on the same frames:
  1. decode fps per core: PyAV at 25 fps with RGB conversion (and decord, when importable);
  2. the ceiling: MediaPipe Face Mesh alone (``FaceMesh.process`` on frames already in memory) in
     one process, and the same with voxmesh's pose removal (the backend's ``reconstruct``);
  3. `voxmesh build` end to end over all cores on the shared media repeated to >= 2000 frames.
Ratio = end-to-end fps / (ceiling fps x cores). Usage: python bench/bench_build.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time

import numpy as np

from voxmesh.pipelines.build import BuildConfig, local_pipeline_args, run_build
from voxmesh.pipelines.media import iter_frames
from voxmesh.recon.mediapipe_mesh import MediaPipeFaceMesh

CLIPS = ("hdtf_aoc_512_25fps.mp4", "retalking2_844_25fps.mp4", "retalking4_700_30fps.mp4")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(function):
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = function()
    return result, time.perf_counter() - wall, cpu_seconds() - cpu


def decode_pyav(paths: list[str]) -> list[np.ndarray]:
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


def mediapipe_alone(videos: list[np.ndarray]) -> int:
    backend = MediaPipeFaceMesh()
    backend.setup()
    for frames in videos:
        backend.reset()
        for frame in frames:
            backend._face_mesh.process(frame)
    backend.close()
    return sum(len(v) for v in videos)


def backend_reconstruct(videos: list[np.ndarray]) -> int:
    backend = MediaPipeFaceMesh()
    backend.setup()
    for frames in videos:
        backend.reset()
        backend.reconstruct(frames)
    backend.close()
    return sum(len(v) for v in videos)


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
    videos, wall, cpu = timed(lambda: decode_pyav(paths))
    n_frames = sum(len(v) for v in videos)
    report["frames_per_pass"] = n_frames
    report["decode_pyav_fps"] = round(n_frames / wall, 1)
    try:
        n, wall, _ = timed(lambda: decode_decord(paths))
        report["decode_decord_fps"] = round(n / wall, 1)
    except ImportError:
        report["decode_decord_fps"] = None
    n, wall, cpu = timed(lambda: mediapipe_alone(videos))
    report["mediapipe_alone_fps"] = round(n / wall, 1)
    report["mediapipe_alone_cpu_per_wall"] = round(cpu / wall, 2)
    n, wall, _ = timed(lambda: backend_reconstruct(videos))
    report["backend_reconstruct_fps"] = round(n / wall, 1)
    del videos

    with tempfile.TemporaryDirectory() as tmp:
        inputs = os.path.join(tmp, "inputs")
        for copy in range(args.repeat):
            os.makedirs(os.path.join(inputs, f"copy{copy:03d}"))
            for path in paths:
                os.symlink(path, os.path.join(inputs, f"copy{copy:03d}", os.path.basename(path)))
        config = BuildConfig(input=inputs, output=os.path.join(tmp, "out"), inputs_per_shard=1)
        summary, wall, _ = timed(lambda: run_build(config, local_pipeline_args(args.workers)))
    frames_in = n_frames * args.repeat
    report["end_to_end_frames"] = frames_in
    report["end_to_end_clips"] = summary["clips"]
    report["end_to_end_seconds"] = round(wall, 2)
    report["end_to_end_fps"] = round(frames_in / wall, 1)
    report["ratio_to_ceiling"] = round(frames_in / wall / (report["mediapipe_alone_fps"] * args.workers), 3)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
