"""Benchmark of ingest memory and decode speed (not a test; figures go in the README).

1. Peak resident memory of ``process_input`` (decode, audio, face pass, crops, MediaPipe, clips)
   on generated 720p talking-face videos of 1 and 10 minutes, each in a fresh process: it must
   stay under 1.5 GB and not grow with duration.
2. Decode fps per core (PyAV, 25 fps selection, RGB) on the shared media.
Usage: python bench/bench_ingest.py [--minutes 1 10] [--media DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

CLIPS = ("hdtf_aoc_512_25fps.mp4", "retalking2_844_25fps.mp4", "retalking4_700_30fps.mp4")


def make_video(path: str, minutes: float) -> None:
    """A 1280x720 talking face: the demo's animated photograph drifting across a background."""
    import av
    from skimage import data

    from voxmesh.pipelines.demo import find_mouth, mouth_openness, open_mouth, speech_like
    from voxmesh.pipelines.ingest.audio import encode_audio
    face = data.astronaut()[0:320, 64:384]
    mouth = find_mouth(face)
    seconds = minutes * 60
    audio = speech_like(seconds, seed=1)
    openness = mouth_openness(audio)
    with av.open(path, "w") as container:
        video = container.add_stream("libx264", rate=25, options={"preset": "ultrafast", "crf": "28"})
        video.width, video.height, video.pix_fmt = 1280, 720, "yuv420p"
        sound = container.add_stream("aac", rate=16000, layout="mono")
        canvas = np.full((720, 1280, 3), 90, np.uint8)
        for t, amount in enumerate(openness):
            x = int(480 + 200 * np.sin(t / 200))
            frame = canvas.copy()
            frame[200:520, x:x + 320] = open_mouth(face, mouth, float(amount))
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(video.encode())
        encode_audio(container, sound, audio)


def ingest_child(path: str) -> None:
    """Run in a fresh process: ingest one video as a build worker does (samples spooled to a
    temporary tar as each track is done) and print its figures as JSON."""
    from voxmesh.pipelines.build.pipeline import SampleSpool
    from voxmesh.pipelines.ingest.clips import ClipRules
    from voxmesh.pipelines.ingest.faces import FaceDetector
    from voxmesh.pipelines.ingest.item import InputItem
    from voxmesh.pipelines.ingest.process import process_input
    from voxmesh.recon.mediapipe_mesh import MediaPipeFaceMesh
    backend, detector = MediaPipeFaceMesh(), FaceDetector()
    backend.setup()
    start = time.perf_counter()
    with SampleSpool() as spool:
        result = process_input(InputItem(path, "s", "v", "0"), "train", backend, detector, ClipRules(),
                               sink=spool.add)
    wall = time.perf_counter() - start
    print(json.dumps({"frames": result.n_frames, "clips": result.n_samples, "seconds": round(wall, 1),
                      "fps": round(result.n_frames / wall, 1),
                      "peak_rss_mb": round(peak_resident_mb(), 1)}))


def peak_resident_mb() -> float:
    """This process's peak resident memory since it started (``VmHWM``). Not ``ru_maxrss``: that
    survives ``execve`` and so includes the parent's size at the moment it started the child (here
    the parent that has just generated a 10-minute video)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (this benchmark needs Linux)")


def decode_fps(media: str) -> float:
    from voxmesh.pipelines.ingest.frames import iter_frames
    start, n = time.perf_counter(), 0
    for name in CLIPS:
        n += sum(len(chunk) for chunk in iter_frames(os.path.join(media, name)))
    return round(n / (time.perf_counter() - start), 1)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        ingest_child(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10])
    parser.add_argument("--media", default=os.environ.get("VOXMESH_TEST_MEDIA", "../shared/media"))
    args = parser.parse_args()
    report = {"decode_fps_per_core_shared_media": decode_fps(args.media)}
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            path = os.path.join(tmp, f"talk_{minutes:g}min.mp4")
            make_video(path, minutes)
            child = subprocess.run([sys.executable, __file__, "--child", path], capture_output=True, text=True)
            if child.returncode:
                sys.exit(f"ingest of {path} failed:\n{child.stderr[-3000:]}")
            report[f"ingest_{minutes:g}min_720p"] = json.loads(child.stdout.strip().splitlines()[-1])
            os.remove(path)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
