"""Where a call's time goes inside one of the build's MediaPipe graphs (not a test; the figures go
in the README), with MediaPipe's own profiler on; then, per calculator, its calls and its time per
frame, largest first. ``--graph face_mesh`` (default): the backend's graph (one face, tracking
mode, refined landmarks) on the frames of a real clip resized to the crops' 256x256.
``--graph short_range`` / ``full_range``: the looks' BlazeFace models on the clip's whole frames
(``--media`` of the bench's 224x224 clips gives VoxCeleb2's frame size).

The profiled graph runs on MediaPipe's default executor (its thread pool): with the calling-thread
executor the build uses (``recon.mediapipe_graph.on_calling_thread``), a graph with the profiler
on never goes idle. Each calculator's time is its own ``Process`` time either way.

Usage: python bench/profile_face_mesh_graph.py [--graph NAME] [--media DIR] [--frames N] [--rows N]
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import sys
import tempfile

import cv2

from voxmesh.pipelines.ingest.frames import iter_images
from voxmesh.recon.mediapipe_graph import graph_config, output_packet, rebuilt

CLIP = "hdtf_aoc_512_25fps.mp4"
CROP = 256
# --graph: (what it is fed, its output stream)
GRAPHS = {"face_mesh": ("crops", "multi_face_landmarks"),
          "short_range": ("whole frames", "detections"),
          "full_range": ("whole frames", "detections")}


def solution_of(graph: str):
    """The legacy solution the build runs for ``graph``, made as the build makes it."""
    if graph == "face_mesh":
        from voxmesh.recon.mediapipe_mesh import tracking_face_mesh
        return tracking_face_mesh()
    from voxmesh.pipelines.ingest.faces import blazeface
    return blazeface(short_range=graph == "short_range")


def profiled(graph: str, trace_folder: str):
    """The solution of ``graph``, its graph rebuilt with the profiler on."""
    solution = solution_of(graph)
    config = graph_config(solution)
    config.profiler_config.enable_profiler = True
    config.profiler_config.trace_enabled = True
    config.profiler_config.trace_log_path = trace_folder + os.sep
    return rebuilt(solution, config)


def label(node: str) -> str:
    """A node's name as its outermost subgraph and its calculator (``facelandmarkcpu /
    InferenceCalculator``): the detector's and the landmark model's inference are told apart."""
    parts = node.split("__")
    return f"{parts[0]} / {parts[-1]}" if len(parts) > 1 else node


def calculator_times(trace_folder: str) -> dict[str, tuple[int, float]]:
    """Per calculator node: (calls, seconds in Process), from the profiler's logs (cumulative
    snapshots: the largest counts)."""
    from mediapipe.framework import calculator_profile_pb2
    totals: dict[str, tuple[int, float]] = collections.defaultdict(lambda: (0, 0.0))
    for path in sorted(glob.glob(os.path.join(trace_folder, "*.binarypb"))):
        log = calculator_profile_pb2.GraphProfile()
        with open(path, "rb") as f:
            log.ParseFromString(f.read())
        for profile in log.calculator_profiles:
            calls, micros = sum(profile.process_runtime.count), profile.process_runtime.total
            totals[profile.name] = max(totals[profile.name], (calls, micros / 1e6))
    return dict(totals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--graph", choices=sorted(GRAPHS), default="face_mesh")
    parser.add_argument("--media", default=os.environ.get("VOXMESH_TEST_MEDIA", "../shared/media"))
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--rows", type=int, default=6, help="calculators listed one by one; the rest in one row")
    args = parser.parse_args()
    source = os.path.join(args.media, CLIP)
    if not os.path.isfile(source):
        sys.exit(f"missing {source}; pass --media or set VOXMESH_TEST_MEDIA")
    fed, stream = GRAPHS[args.graph]
    clip = [cv2.resize(image, (CROP, CROP), interpolation=cv2.INTER_AREA) if args.graph == "face_mesh" else image
            for image in iter_images(source)]
    with tempfile.TemporaryDirectory() as traces:
        solution = profiled(args.graph, traces)
        for t in range(args.frames):
            output_packet(solution, clip[t % len(clip)], stream)
        solution.close()
        times = calculator_times(traces)
    ranked = sorted(((seconds, label(name), calls) for name, (calls, seconds) in times.items() if calls),
                    reverse=True)
    # The model runs once per frame; the profiler's last snapshot can miss the last few frames
    # fed, so the frames profiled are its calls.
    frames = ranked[0][2]
    height, width = clip[0].shape[:2]
    print(f"| {args.graph} calculator ({frames} frames profiled, {fed}: {width}x{height}) | calls | ms per frame |")
    print("| --- | --- | --- |")
    for seconds, name, calls in ranked[:args.rows]:
        print(f"| {name} | {calls} | {seconds / frames * 1e3:.3f} |")
    rest = ranked[args.rows:]
    print(f"| the other {len(rest)} calculators | {sum(r[2] for r in rest)} | {sum(r[0] for r in rest) / frames * 1e3:.3f} |")
    print(f"| **all** | {sum(r[2] for r in ranked)} | {sum(r[0] for r in ranked) / frames * 1e3:.3f} |")


if __name__ == "__main__":
    main()
