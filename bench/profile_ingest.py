"""Where each millisecond of a frame goes when one process ingests a set of clips
(``process_input``, defaults), next to what the script it replaces spends per frame on the same
clips in the same process (not a test; the figures go in the README). Used by
bench_build.py --profile.

Each step is the wall time spent inside its functions (timers wrapped around them while the
profile runs; a generator's time is that of its ``next`` calls), so the rows cost what they cost
without a profiler's overhead per Python call. "of which" rows are inside the row above them;
"everything else" is the total less the top-level rows. The script (``naive_script.py``: OpenCV
decode, ``FaceMesh.process`` on every 25 fps frame, landmarks point by point, 16 kHz audio) and the
ingest run ``--runs`` times each, alternating, so that the machine's drift falls on both.

Usage: python bench/profile_ingest.py [--media DIR] [--runs 2]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import inspect
import json
import os
import sys
import time
from collections.abc import Callable, Iterator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import naive_script  # noqa: E402

CLIPS = ("hdtf_aoc_512_25fps.mp4", "retalking2_844_25fps.mp4", "retalking4_700_30fps.mp4")
TOTAL = "total"
GRAPHS = "MediaPipe's graphs alone (Face Mesh and looks)"


def steps() -> tuple[tuple[str, object, str], ...]:
    """(what, owner, attribute): the function each step times, as the ingest looks it up (a
    function imported by name into ``process`` is timed there); for MediaPipe's graph calls the
    owner is None and the attribute is the graph's output stream, which tells the graphs apart."""
    from voxmesh.pipelines.ingest import faces, frames, process, tracking
    from voxmesh.recon import mediapipe_mesh
    return (
        ("Face Mesh backend on the crops (graph, landmarks, pose)", mediapipe_mesh.MediaPipeFaceMesh, "reconstruct"),
        ("of which MediaPipe's Face Mesh graph", None, "multi_face_landmarks"),
        ("of which landmark conversion", mediapipe_mesh, "landmarks_to_points"),
        ("of which pose removal (Umeyama)", mediapipe_mesh, "remove_pose"),
        ("BlazeFace looks", faces.FaceDetector, "detect"),
        ("of which MediaPipe's BlazeFace graphs", None, "detections"),
        ("decode: PyAV, 25 fps selection, I420 planes", process, "iter_decoded"),
        ("RGB of the looked-at frames", frames.I420Frame, "rgb"),
        ("audio: decode, 16 kHz, aligned", process, "load_audio"),
        ("shot-cut thumbnails", faces.ShotCutDetector, "is_cut"),
        ("crops", process, "crop"),
        ("tracker (online, lookahead)", tracking.OnlineTracker, "push"),
        ("results spooled per run", process.ResultSpool, "add"),
        ("results read back per track", process.ResultSpool, "read_parts"),
        ("clips: offsets, quality figures, samples", process, "_sample"),
        ("of which the offset estimate", process, "estimate_offset"),
    )


def _timed(function, label: Callable[..., str], spent: collections.Counter):
    """``function`` adding its wall time to ``spent[label(*its arguments)]`` (a generator: the time
    of its ``next`` calls)."""
    if inspect.isgeneratorfunction(function):
        @functools.wraps(function)
        def generator(*args, **kwargs):
            inner, where = function(*args, **kwargs), label(*args, **kwargs)
            while True:
                start = time.perf_counter()
                try:
                    item = next(inner)
                except StopIteration:
                    return
                finally:
                    spent[where] += time.perf_counter() - start
                yield item
        return generator

    @functools.wraps(function)
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[label(*args, **kwargs)] += time.perf_counter() - start
    return timed


@contextlib.contextmanager
def timers() -> Iterator[collections.Counter]:
    """While open, every step's function adds its wall time to the yielded counter under the
    step's name. Restored on leaving."""
    from voxmesh.recon import mediapipe_graph
    spent: collections.Counter = collections.Counter()
    functions = [(what, owner, attribute) for what, owner, attribute in steps() if owner is not None]
    graph_rows = {stream: what for what, owner, stream in steps() if owner is None}
    originals = [getattr(owner, attribute) for _, owner, attribute in functions]
    graph_call = mediapipe_graph.output_packet
    try:
        for (what, owner, attribute), original in zip(functions, originals):
            setattr(owner, attribute, _timed(original, lambda *_, what=what, **__: what, spent))
        mediapipe_graph.output_packet = _timed(graph_call, lambda solution, image, stream: graph_rows[stream], spent)
        yield spent
    finally:
        mediapipe_graph.output_packet = graph_call
        for (_, owner, attribute), original in zip(functions, originals):
            setattr(owner, attribute, original)


def ingest_per_frame(sources: list[str]) -> dict:
    """Milliseconds per frame of each step of ingesting ``sources`` in this process with the
    defaults (set-up and a first input not timed), the total and the frames."""
    from voxmesh.pipelines.ingest.clips import ClipRules
    from voxmesh.pipelines.ingest.faces import FaceDetector
    from voxmesh.pipelines.ingest.item import InputItem
    from voxmesh.pipelines.ingest.process import process_input
    from voxmesh.recon.mediapipe_mesh import MediaPipeFaceMesh
    backend, detector = MediaPipeFaceMesh(), FaceDetector()
    backend.setup()
    items = [InputItem(s, "s", "v", str(k)) for k, s in enumerate(sources)]
    process_input(items[0], "train", backend, detector, ClipRules())
    with timers() as spent:
        start = time.perf_counter()
        n_frames = sum(process_input(item, "train", backend, detector, ClipRules()).n_frames for item in items)
        wall = time.perf_counter() - start
    backend.close()
    detector.close()
    per_frame = {what: round(1000 * spent[what] / n_frames, 3) for what, _, _ in steps()}
    counted = sum(seconds for what, seconds in spent.items() if not what.startswith("of which"))
    per_frame["everything else"] = round(1000 * (wall - counted) / n_frames, 3)
    per_frame[TOTAL] = round(1000 * wall / n_frames, 3)
    per_frame[GRAPHS] = round(sum(per_frame[what] for what, owner, _ in steps() if owner is None), 3)
    per_frame["frames"] = n_frames
    return per_frame


def naive_per_frame(sources: list[str]) -> float:
    """Milliseconds per frame of the naive script's work on ``sources`` in this process (a first
    video not timed): its landmarks and audio, without its own process start."""
    naive_script.landmarks_of_video(sources[0])
    start, n_frames = time.perf_counter(), 0
    for source in sources:
        n_frames += len(naive_script.landmarks_of_video(source))
        naive_script.audio_16k(source)
    return round(1000 * (time.perf_counter() - start) / n_frames, 3)


def profile(sources: list[str], runs: int) -> dict:
    """``runs`` of the script and of the ingest, alternating; per run the ingest's steps, the
    script's milliseconds per frame, the time per frame that 1.5x the script's rate leaves and
    the ingest's own MediaPipe graphs against it."""
    report: dict = {"runs": []}
    for _ in range(runs):
        naive = naive_per_frame(sources)
        ingest = ingest_per_frame(sources)
        report["runs"].append({"ingest": ingest, "naive_script_ms": naive, "at_1.5x_the_script_ms": round(naive / 1.5, 3),
                               "script_vs_ingest": round(naive / ingest[TOTAL], 3)})
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--media", default=os.environ.get("VOXMESH_TEST_MEDIA", "../shared/media"))
    parser.add_argument("--runs", type=int, default=2, help="runs of the script and of the ingest, alternating")
    args = parser.parse_args()
    print(json.dumps(profile([os.path.join(args.media, n) for n in CLIPS], args.runs), indent=1))


if __name__ == "__main__":
    main()
