"""Where each millisecond of a frame goes when one process ingests the shared media
(``process_input``, defaults, profiled with cProfile). Used by bench_build.py --profile.

Usage: python bench/profile_ingest.py [--media DIR]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import time


def steps() -> tuple[tuple[str, tuple], ...]:
    """(what, functions): the cumulative time of those functions, per frame (the functions are
    named by their code objects, so that two methods of the same name are told apart)."""
    from voxmesh.metrics.sync import estimate_offset
    from voxmesh.pipelines.ingest import audio, faces, frames, process, tracking
    from voxmesh.recon import mediapipe_mesh, pose
    return (
        ("Face Mesh backend on the crops (graph, landmarks, pose)", (mediapipe_mesh.MediaPipeFaceMesh.reconstruct,)),
        ("of which landmark conversion", (mediapipe_mesh.landmarks_to_points,)),
        ("of which pose removal (Umeyama)", (pose.remove_pose,)),
        ("BlazeFace looks", (faces.FaceDetector.detect,)),
        ("decode: PyAV, 25 fps selection, I420 planes", (frames.iter_decoded,)),
        ("RGB of the looked-at frames", (frames.I420Frame.rgb,)),
        ("audio: decode, 16 kHz, aligned", (audio.load_audio,)),
        ("shot-cut thumbnails", (faces.ShotCutDetector.is_cut,)),
        ("crops", (faces.crop,)),
        ("tracker (online, lookahead)", (tracking.OnlineTracker.push,)),
        ("results spooled per run and read back", (process.ResultSpool.add, process.ResultSpool.read_parts)),
        ("clips: offsets, quality figures, samples", (process._sample,)),
        ("of which the offset estimate", (estimate_offset,)),
    )


def profile_shared_media(sources: list[str]) -> dict:
    from voxmesh.pipelines.ingest.clips import ClipRules
    from voxmesh.pipelines.ingest.faces import FaceDetector
    from voxmesh.pipelines.ingest.item import InputItem
    from voxmesh.pipelines.ingest.process import process_input
    from voxmesh.recon.mediapipe_mesh import MediaPipeFaceMesh
    backend, detector = MediaPipeFaceMesh(), FaceDetector()
    backend.setup()
    items = [InputItem(s, "s", "v", str(k)) for k, s in enumerate(sources)]
    process_input(items[0], "train", backend, detector, ClipRules())  # start-up not profiled
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    n_frames = sum(process_input(item, "train", backend, detector, ClipRules()).n_frames for item in items)
    profiler.disable()
    wall = time.perf_counter() - start
    stats = pstats.Stats(profiler).stats
    measured: dict[str, float] = {}
    for what, functions in steps():
        codes = {(f.__code__.co_filename, f.__code__.co_firstlineno, f.__code__.co_name) for f in functions}
        measured[what] = sum(row[3] for key, row in stats.items() if key in codes)
    per_frame = {what: round(1000 * seconds / n_frames, 2) for what, seconds in measured.items()}
    counted = sum(seconds for what, seconds in measured.items() if not what.startswith("of which"))
    per_frame["everything else"] = round(1000 * (wall - counted) / n_frames, 2)
    per_frame["total (profiled; cProfile adds its own overhead)"] = round(1000 * wall / n_frames, 2)
    per_frame["frames"] = n_frames
    return per_frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--media", default=os.environ.get("VOXMESH_TEST_MEDIA", "../shared/media"))
    args = parser.parse_args()
    names = ("hdtf_aoc_512_25fps.mp4", "retalking2_844_25fps.mp4", "retalking4_700_30fps.mp4")
    print(json.dumps(profile_shared_media([os.path.join(args.media, n) for n in names]), indent=1))


if __name__ == "__main__":
    main()
