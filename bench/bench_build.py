"""Benchmark of `voxmesh build` against the script it replaces and against MediaPipe's own
ceiling (not a test; figures go in the README).

In one run, on two sets of inputs:
  (a) 224x224 25 fps clips made here from the shared media with PyAV (H.264 + AAC 16 kHz,
      VoxCeleb2's own format), and
  (b) the shared media as they are (512-844 px, 25 and 30 fps),
each repeated until the set holds at least ``--min-frames`` frames, it measures:
  1. decode alone: PyAV, 25 fps selection, RGB, one process;
  2. MediaPipe Face Mesh alone (one face, tracking mode, refined landmarks) on frames already in
     memory, one process: the ceiling per core; and the same in one process per core at once
     (what the cores deliver together: two logical cores may share one physical core);
  3. the naive script (bench/naive_script.py), one process per core, files dealt round-robin;
  4. `voxmesh build` end to end with its defaults over all cores: the command as a user runs it,
     in its own process (start-up and imports, planning, Beam, parts, packing), timed from its
     start as the naive script's processes are.
It prints per-set figures, the ratios build / naive, build / (MediaPipe alone x cores) and
build / (MediaPipe alone, all cores at once). The naive script and the build also run on the
set's first inputs alone (one per worker): the two runs split each one's time into a fixed cost
per run and a rate per frame beyond it, and the core-hours that each would take for VoxCeleb2 dev
(220 M frames, where one run's fixed cost is nothing) are projected at those rates.
``--rounds N`` runs 2-4 N times in turn and takes each ratio within its round: on a machine whose
speed drifts, a ratio of two figures measured minutes apart moves with the drift.
``--profile`` also profiles one process ingesting the shared media (cProfile) and prints where
each millisecond of a frame goes.

Usage: python bench/bench_build.py [--min-frames 2000] [--workers N] [--rounds N] [--profile] [--short]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import naive_script  # noqa: E402
from timing import wall_seconds  # noqa: E402

from voxmesh.pipelines.ingest.audio import encode_audio, load_audio  # noqa: E402
from voxmesh.pipelines.ingest.frames import iter_images  # noqa: E402

CLIPS = ("hdtf_aoc_512_25fps.mp4", "retalking2_844_25fps.mp4", "retalking4_700_30fps.mp4")
VOXCELEB2_DEV_FRAMES = 220e6


def make_224(source: str, path: str, max_frames: int | None) -> None:
    """``source`` as VoxCeleb2 stores a clip: the centred square resized to 224x224, 25 fps H.264,
    AAC mono 16 kHz."""
    import av
    import cv2
    frames = []
    for image in iter_images(source):
        side = min(image.shape[:2])
        top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
        frames.append(cv2.resize(image[top:top + side, left:left + side], (224, 224), interpolation=cv2.INTER_AREA))
        if max_frames and len(frames) == max_frames:
            break
    audio = load_audio(source).samples[:len(frames) * 640]
    with av.open(path, "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 224, 224, "yuv420p"
        sound = container.add_stream("aac", rate=16000, layout="mono")
        for image in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode())
        encode_audio(container, sound, audio, 16000)


def repeated(sources: list[str], folder: str, min_frames: int) -> tuple[list[str], list[int]]:
    """Links to ``sources`` in ``folder/copyNNN/`` (one speaker per copy), two copies or more, until
    they hold at least ``min_frames`` frames; the links and the frames of each."""
    frames = {source: sum(1 for _ in iter_images(source)) for source in sources}
    copies = max(2, -(-min_frames // sum(frames.values())))
    paths, counts = [], []
    for copy in range(copies):
        os.makedirs(os.path.join(folder, f"copy{copy:03d}"))
        for source in sources:
            paths.append(os.path.join(folder, f"copy{copy:03d}", os.path.basename(source)))
            os.symlink(source, paths[-1])
            counts.append(frames[source])
    return paths, counts


def linked(paths: list[str], folder: str) -> None:
    """Links to ``paths`` (``copyNNN/name``) in ``folder``, with the same relative names."""
    for path in paths:
        link = os.path.join(folder, os.path.basename(os.path.dirname(path)), os.path.basename(path))
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.realpath(path), link)


def build_command(inputs: str, output: str, workers: int) -> None:
    """``voxmesh build`` with its defaults, as a user runs it, in its own process."""
    subprocess.run([sys.executable, "-m", "voxmesh", "-q", "build", "--input", inputs, "--output", output,
                    "--workers", str(workers)], check=True, stdout=subprocess.DEVNULL)


def fixed_and_rate(few: tuple[int, float], many: tuple[int, float]) -> tuple[float, float]:
    """(fixed seconds, frames/s beyond them) of ``seconds = fixed + frames / rate`` through two
    runs given as (frames, seconds): the per-run cost (start-up, set-up, the end) and the rate a
    run pays per frame, which is what a run over VoxCeleb2 dev (220 M frames) pays. (Where the
    larger run was not the slower, as noise can make it on the tiny clips of ``--short``, their
    difference counts as 1 ms.)"""
    rate = (many[0] - few[0]) / max(many[1] - few[1], 1e-3)
    return few[1] - few[0] / rate, rate


def decode_alone(sources: list[str]) -> float:
    start, n = time.perf_counter(), 0
    for source in sources:
        n += sum(1 for _ in iter_images(source))
    return n / (time.perf_counter() - start)


def mediapipe_alone(sources: list[str]) -> float:
    """Face Mesh as the naive script and the backend run it, on every frame of ``sources`` held in
    memory; one process; graph start-up not timed."""
    from voxmesh.recon.mediapipe_mesh import tracking_face_mesh
    with tracking_face_mesh() as mesh:
        videos = [list(iter_images(s)) for s in sources]
        for image in videos[0][:25]:
            mesh.process(image)
        start = time.perf_counter()
        for frames in videos:
            mesh.reset()
            for image in frames:
                mesh.process(image)
        n = sum(len(v) for v in videos)
        return n / (time.perf_counter() - start)


def mediapipe_alone_on_all_cores(sources: list[str], workers: int) -> float:
    """:func:`mediapipe_alone` in ``workers`` processes at once; their frames/s added up."""
    import multiprocessing
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return sum(pool.map(mediapipe_alone, [sources] * workers))


def measure(name: str, sources: list[str], tmp: str, args: argparse.Namespace) -> dict:
    """One set's figures. With ``--rounds`` N, MediaPipe alone, the naive script and the build run
    N times in turn, each ratio is taken within its round (so that the machine's drift between
    rounds cancels) and the report gives each round's figures and their medians."""
    paths, counts = repeated(sources, os.path.join(tmp, f"{name}-inputs"), args.min_frames)
    n_first = min(args.workers, len(paths) // 2)  # one input per worker, at most half the set
    linked(paths[:n_first], os.path.join(tmp, f"{name}-first"))
    report: dict = {"inputs": len(paths), "frames": sum(counts), "first_inputs": n_first,
                    "first_frames": sum(counts[:n_first])}
    report["decode_fps_one_process"] = round(decode_alone(sources), 1)
    rounds = [measure_round(name, sources, paths, counts, n_first, tmp, args, index) for index in range(args.rounds)]
    for key in rounds[0]:
        if key != "seconds":
            report[key] = statistics.median(r[key] for r in rounds)
    if args.rounds > 1:
        report["rounds"] = rounds
    return report


def measure_round(name: str, sources: list[str], paths: list[str], counts: list[int], n_first: int, tmp: str,
                  args: argparse.Namespace, index: int) -> dict:
    """MediaPipe alone, the naive script and the build, one after the other, and their ratios.
    The naive script and the build also run on the set's first inputs alone (one per worker), so
    that each one's cost splits into a fixed cost per run and a rate per frame
    (:func:`fixed_and_rate`); the core-hours for VoxCeleb2 dev are projected at those rates."""
    report: dict = {}
    report["mediapipe_alone_fps_one_process"] = round(mediapipe_alone(sources), 1)
    report["mediapipe_alone_fps_all_cores_at_once"] = round(mediapipe_alone_on_all_cores(sources, args.workers), 1)
    few, many = sum(counts[:n_first]), sum(counts)
    out = os.path.join(tmp, f"{name}-out{index}")
    seconds = {
        "naive_first": wall_seconds(naive_script.run, paths[:n_first], f"{out}-naive-first", args.workers),
        "naive": wall_seconds(naive_script.run, paths, f"{out}-naive", args.workers),
        "build_first": wall_seconds(build_command, os.path.join(tmp, f"{name}-first"), f"{out}-build-first", args.workers),
        "build": wall_seconds(build_command, os.path.join(tmp, f"{name}-inputs"), f"{out}-build", args.workers),
    }
    report["seconds"] = seconds = {what: round(s, 3) for what, s in seconds.items()}
    with open(os.path.join(f"{out}-build", "dataset.json")) as f:
        report["build_clips"] = json.load(f)["counts"]["clips"]
    for what in ("naive", "build"):
        report[f"{what}_fps"] = round(many / seconds[what], 1)
        fixed, rate = fixed_and_rate((few, seconds[f"{what}_first"]), (many, seconds[what]))
        report[f"{what}_fixed_s"], report[f"{what}_fps_beyond_fixed"] = round(fixed, 2), round(rate, 1)
    report["build_vs_naive"] = round(report["build_fps"] / report["naive_fps"], 3)
    report["build_vs_naive_beyond_fixed"] = round(report["build_fps_beyond_fixed"] / report["naive_fps_beyond_fixed"], 3)
    report["build_vs_mediapipe_alone_x_cores"] = round(
        report["build_fps"] / (report["mediapipe_alone_fps_one_process"] * args.workers), 3)
    report["build_vs_mediapipe_alone_all_cores_at_once"] = round(
        report["build_fps"] / report["mediapipe_alone_fps_all_cores_at_once"], 3)
    for what in ("naive", "build"):
        per_core = report[f"{what}_fps_beyond_fixed"] / args.workers
        report[f"{what}_core_hours_voxceleb2_dev"] = round(VOXCELEB2_DEV_FRAMES / per_core / 3600)
    report["mediapipe_alone_core_hours_voxceleb2_dev"] = round(
        VOXCELEB2_DEV_FRAMES / report["mediapipe_alone_fps_one_process"] / 3600)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--media", default=os.environ.get("VOXMESH_TEST_MEDIA", "../shared/media"))
    parser.add_argument("--min-frames", type=int, default=2000, help="frames per set of inputs (by repeating them)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--profile", action="store_true", help="also profile one process on the shared media")
    parser.add_argument("--short", action="store_true", help="a quick run: 2 s of two clips, no repetition")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run MediaPipe alone, the naive script and the build this many times in turn; "
                             "ratios within each round, medians reported")
    args = parser.parse_args()
    sources = [os.path.abspath(os.path.join(args.media, c)) for c in CLIPS]
    missing = [p for p in sources if not os.path.isfile(p)]
    if missing:
        sys.exit(f"missing media {missing}; pass --media or set VOXMESH_TEST_MEDIA")
    if args.short:
        args.min_frames = 0
    report: dict = {"cores": os.cpu_count(), "workers": args.workers}
    with tempfile.TemporaryDirectory() as tmp:
        small = []
        for source in sources[:2] if args.short else sources:
            small.append(os.path.join(tmp, "224", os.path.basename(source)))
            os.makedirs(os.path.dirname(small[-1]), exist_ok=True)
            make_224(source, small[-1], 60 if args.short else None)
        report["224x224"] = measure("224x224", small, tmp, args)
        if args.short:
            shared = [os.path.join(tmp, "short", os.path.basename(s)) for s in sources[:2]]
            os.makedirs(os.path.dirname(shared[0]))
            for source, path in zip(sources, shared):
                os.symlink(source, path)
        else:
            shared = sources
        report["shared_media_native"] = measure("shared_media_native", shared, tmp, args)
    if args.profile:
        from profile_ingest import profile
        report["profile_ms_per_frame"] = profile(sources, runs=1)["runs"][0]
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
