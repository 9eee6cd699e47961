"""Benchmark of the audio-visual offset estimate on real clips with known shifts (not a test;
the table goes in the README).

Each real clip of the shared media is decoded once (25 fps frames, 16 kHz audio) and re-encoded
with PyAV (H.264 + AAC 16 kHz mono, the same settings for every shift, 0 included) with its
audio moved by each shift: ``+k`` frames plays it ``k * 40`` ms later (silence in front), ``-k``
earlier (its first ``k * 40`` ms cut). Each file goes through voxmesh's ingest
(``process_input``: probe, decode, faces, MediaPipe, clips, offset). Per clip: its true shift is
the applied one (the sources are taken to play in sync); an estimate is *right* when within one
frame of it; an in-sync clip (shift 0) is *flagged* when ``av_offset_ok`` is false.

Two checks of the statistics beyond these clips: ``--unrelated`` pairs each clip's mouth with
other recordings' speech, ``--generated N`` runs N generated speaker/mouth pairs; neither may
produce an estimate where mouth and speech were never together. ``--lip-closures`` checks the
assumption that the sources play in sync, apart from the estimator: where a source's lips close,
is its speech quieter at lag 0 than at other lags?

Usage: python bench/bench_sync.py [--media DIR] [--short] [--shifts -6 ... 6] [--keep DIR]
       [--unrelated] [--lip-closures] [--generated N]
``--short``: shifts -4, 0, +4 (the CI check in tests/test_bench_sync.py).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import tempfile

import numpy as np

CLIPS = ("hdtf_aoc_512_25fps.mp4", "retalking2_844_25fps.mp4", "retalking4_700_30fps.mp4")
ALL_SHIFTS = tuple(range(-6, 7))
SHORT_SHIFTS = (-4, 0, 4)
WAVS = ("harvard_16k.wav", "hdtf_radio31_16k.wav")


@dataclasses.dataclass(frozen=True)
class Row:
    """One built clip: its source, applied shift and what the estimator said."""

    source: str
    shift: int
    offset: int | None
    confidence: float
    reason: str | None
    ok: bool

    @property
    def right(self) -> bool:
        return self.offset is not None and abs(self.offset - self.shift) <= 1


def shifted_audio(audio: np.ndarray, frames: int) -> np.ndarray:
    """``audio`` moved ``frames`` 25 fps frames later (silence in front) or earlier (start cut)."""
    step = abs(frames) * 16000 // 25
    if frames >= 0:
        return np.concatenate([np.zeros(step, np.float32), audio])
    return audio[step:]


def write_clip(path: str, frames: np.ndarray, audio: np.ndarray) -> None:
    """H.264 (crf 18, yuv420p) at 25 fps and AAC 16 kHz mono: the same for every shift."""
    import av

    from voxmesh.pipelines.ingest.audio import encode_audio
    with av.open(path, "w") as container:
        video = container.add_stream("libx264", rate=25, options={"crf": "18", "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        sound = container.add_stream("aac", rate=16000, layout="mono")
        for image in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")))
        container.mux(video.encode())
        encode_audio(container, sound, audio)


@contextlib.contextmanager
def ingest_models():
    """(backend, detector) as a build worker sets them up: MediaPipe Face Mesh and BlazeFace."""
    from voxmesh.pipelines.ingest.faces import FaceDetector
    from voxmesh.recon.mediapipe_mesh import MediaPipeFaceMesh

    backend, detector = MediaPipeFaceMesh(), FaceDetector()
    backend.setup()
    try:
        yield backend, detector
    finally:
        backend.close()
        detector.close()


def build_sources(media: str) -> dict[str, list]:
    """Each source clip of ``media`` as it is, built with voxmesh's ingest: its samples."""
    from voxmesh.pipelines.ingest.clips import ClipRules
    from voxmesh.pipelines.ingest.item import InputItem
    from voxmesh.pipelines.ingest.process import process_input

    with ingest_models() as (backend, detector):
        return {name: process_input(InputItem(os.path.join(media, name), "spk", "vid", "u"), "train", backend,
                                    detector, ClipRules()).samples for name in CLIPS}


def unrelated(media: str, sources: dict[str, list], step_seconds: float = 0.25) -> dict[str, float]:
    """Real mouths against real speech that was never with them: each source clip as built
    (``sources``, from :func:`build_sources`), with its audio replaced by a stretch of another
    recording (the other clips and the two wavs of the shared media), starting every
    ``step_seconds``. Any estimate is a confident wrong number; the confidences say how high
    chance goes."""
    from voxmesh.metrics.sync import estimate_offset
    from voxmesh.pipelines.ingest.audio import load_audio
    from voxmesh.schemas import get_topology

    speech = {name: load_audio(os.path.join(media, name), 0.0).samples for name in WAVS}
    speech.update({name: load_audio(os.path.join(media, name)).samples for name in CLIPS})
    confidences, reported = [], 0
    for name, built in sources.items():
        for sample in built:
            topology = get_topology(sample.meta.topology)
            n = len(sample.audio)
            for other, audio in speech.items():
                if other == name:
                    continue
                for start in range(0, max(1, len(audio) - n // 2), int(step_seconds * 16000)):
                    stretch = audio[start:start + n]
                    stretch = np.concatenate([stretch, np.zeros(n - len(stretch), np.float32)])
                    estimate = estimate_offset(sample.mesh, stretch, topology)
                    reported += estimate.offset is not None
                    if estimate.reason in (None, "weak_peak", "ambiguous_peak", "windows_disagree"):
                        confidences.append(estimate.confidence)
    values = np.array(confidences)
    return {"pairs": len(values), "reported": reported, "confidence_median": round(float(np.median(values)), 2),
            "confidence_p99": round(float(np.percentile(values, 99)), 2), "confidence_max": round(float(values.max()), 2)}


def loudness_where_lips_close(mesh: np.ndarray, audio: np.ndarray, topology, lags: np.ndarray) -> np.ndarray:
    """Per lag, the mean speech loudness (:func:`voxmesh.metrics.sync.loudness`, 0 at the clip's
    5th percentile, 1 at its 95th) of audio frame ``t + lag`` over the mouth frames ``t`` whose
    central lip opening is in the clip's lowest tenth. The lips close for /p b m/, whose sound is
    a silence or a murmur: in a clip in sync, those frames are among its quietest at lag 0. A
    check of a source, apart from the estimator's statistic (opening against loudness)."""
    from voxmesh.metrics.sync import lip_measures, loudness

    n = min(len(mesh), len(audio) // 640)
    span = int(np.abs(lags).max())
    opening = lip_measures(mesh[:n], topology)[1]
    level = loudness(audio[:n * 640])
    low, high = np.percentile(level, [5, 95])
    level = (level - low) / max(high - low, 1e-9)
    frames = np.arange(span, n - span)
    closed = frames[opening[frames] <= np.percentile(opening[frames], 10)]
    return np.array([level[closed + lag].mean() for lag in lags])


def lip_closure_check(sources: dict[str, list], span: int = 20) -> str:
    """Per source clip as built (its longest sample), :func:`loudness_where_lips_close` at lag 0
    against the same at every lag in ``-span..span``: the rank of lag 0 among them (1: the
    quietest) says whether the source itself plays in sync, which the bench assumes."""
    from voxmesh.schemas import get_topology

    lags = np.arange(-span, span + 1)
    lines = ["| source | loudness where the lips close, lag 0 | median over lags -20..+20 | rank of lag 0 (1: quietest, of 41) |",
             "| --- | --- | --- | --- |"]
    for name, built in sources.items():
        sample = max(built, key=lambda s: len(s.mesh))
        curve = loudness_where_lips_close(sample.mesh, sample.audio, get_topology(sample.meta.topology), lags)
        at_zero = curve[span]
        lines.append(f"| {name} | {at_zero:.2f} | {np.median(curve):.2f} | {int((curve < at_zero).sum()) + 1} |")
    return "\n".join(lines)


def run(media: str, shifts: tuple[int, ...], workdir: str, keep: str | None = None) -> list[Row]:
    """Build every clip of ``media`` at every shift with voxmesh's ingest; one row per sample.
    With ``keep``, each sample's mesh and audio are saved there (``{file}_{clip}.npz``) to study."""
    from voxmesh.pipelines.ingest.audio import load_audio
    from voxmesh.pipelines.ingest.clips import ClipRules
    from voxmesh.pipelines.ingest.frames import iter_frames
    from voxmesh.pipelines.ingest.item import InputItem
    from voxmesh.pipelines.ingest.process import process_input

    if keep is not None:
        os.makedirs(keep, exist_ok=True)
    rows = []
    with ingest_models() as (backend, detector):
        for name in CLIPS:
            source = os.path.join(media, name)
            frames = np.concatenate([chunk.copy() for chunk in iter_frames(source)])
            audio = load_audio(source).samples
            for shift in shifts:
                path = os.path.join(workdir, f"{os.path.splitext(name)[0]}_{shift:+d}.mp4")
                write_clip(path, frames, shifted_audio(audio, shift))
                result = process_input(InputItem(path, "spk", "vid", f"shift{shift + 100}"), "train", backend, detector,
                                       ClipRules())
                for sample in result.samples:
                    if keep is not None:
                        np.savez(os.path.join(keep, f"{os.path.basename(path)}_{sample.meta.clip}.npz"),
                                 mesh=sample.mesh, audio=sample.audio)
                rows += [Row(name, shift, s.meta.av_offset, s.meta.av_offset_confidence, s.meta.av_offset_reason,
                             s.meta.av_offset_ok) for s in result.samples]
    return rows


def summary(rows: list[Row]) -> dict[str, float]:
    """The bench's figures: clips, estimates reported, right among them, in-sync clips flagged."""
    reported = [r for r in rows if r.offset is not None]
    return {"clips": len(rows), "reported": len(reported), "right": sum(r.right for r in reported),
            "in_sync": sum(r.shift == 0 for r in rows), "in_sync_flagged": sum(r.shift == 0 and not r.ok for r in rows)}


def table(rows: list[Row]) -> str:
    """A Markdown table per source and in total, then one line per clip."""
    lines = ["| source | clips | estimates reported | within one frame of the true shift | in-sync clips flagged |",
             "| --- | --- | --- | --- | --- |"]
    for name in [*CLIPS, None]:
        chosen = [r for r in rows if name is None or r.source == name]
        s = summary(chosen)
        lines.append(f"| {name or '**all**'} | {s['clips']} | {s['reported']} ({s['reported'] / max(s['clips'], 1):.0%}) "
                     f"| {s['right']} ({s['right'] / max(s['reported'], 1):.0%}) "
                     f"| {s['in_sync_flagged']} of {s['in_sync']} |")
    lines += ["", "| source | shift | av_offset | confidence | reason |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r.source} | {r.shift:+d} | {'' if r.offset is None else f'{r.offset:+d}'} | {r.confidence:.2f} "
              f"| {r.reason or ''} |" for r in rows]
    return "\n".join(lines)


def generated(seeds: int, noise: float = 0.15) -> dict[str, int]:
    """The same figures on generated signals, to see the statistics beyond three clips: per seed,
    a speech-like signal (``pipelines.demo.speech_like``) and a mouth that opens with its loudness
    plus Gaussian noise (``noise`` of the full opening), the audio moved by a random shift in
    -6..6 (``matched``), and the same mouth against another seed's speech (``unrelated``: any
    estimate there is a confident wrong number)."""
    from voxmesh.metrics.sync import estimate_offset
    from voxmesh.pipelines.demo import mouth_openness, speech_like, talking_mesh
    from voxmesh.schemas import get_topology

    topology = get_topology("mediapipe478")
    rng = np.random.default_rng(0)
    counts = {"matched": 0, "matched_reported": 0, "matched_right": 0, "unrelated": 0, "unrelated_reported": 0}
    for seed in range(seeds):
        audio = speech_like(8.0, seed)
        opening = 0.8 * mouth_openness(audio)
        mesh = talking_mesh(topology, opening + noise * 0.8 * rng.standard_normal(len(opening)))
        shift = int(rng.integers(-6, 7))
        moved = shifted_audio(audio, shift)[:len(audio)]
        moved = np.concatenate([moved, np.zeros(len(audio) - len(moved), np.float32)])
        estimate = estimate_offset(mesh, moved, topology)
        counts["matched"] += 1
        counts["matched_reported"] += estimate.offset is not None
        counts["matched_right"] += estimate.offset is not None and abs(estimate.offset - shift) <= 1
        other = estimate_offset(mesh, speech_like(8.0, seed + 10_000), topology)
        counts["unrelated"] += 1
        counts["unrelated_reported"] += other.offset is not None
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--media", default=os.environ.get("VOXMESH_TEST_MEDIA", "../shared/media"))
    parser.add_argument("--short", action="store_true", help="shifts -4, 0, +4 only")
    parser.add_argument("--shifts", type=int, nargs="+", default=None)
    parser.add_argument("--keep", default=None, help="folder where each built clip's mesh and audio are saved")
    parser.add_argument("--unrelated", action="store_true",
                        help="also pair each clip's mouth with other recordings' speech (no estimate may come out)")
    parser.add_argument("--lip-closures", action="store_true",
                        help="also check each source: how loud its speech is where its lips close, lag 0 against others")
    parser.add_argument("--generated", type=int, default=0, metavar="SEEDS",
                        help="also run this many generated speaker/mouth pairs (matched and unrelated)")
    args = parser.parse_args()
    shifts = tuple(args.shifts or (SHORT_SHIFTS if args.short else ALL_SHIFTS))
    with tempfile.TemporaryDirectory() as workdir:
        rows = run(args.media, shifts, workdir, args.keep)
    print(table(rows))
    sources = build_sources(args.media) if args.unrelated or args.lip_closures else {}
    if args.lip_closures:
        print(lip_closure_check(sources))
    if args.unrelated:
        print("unrelated speech:", unrelated(args.media, sources))
    if args.generated:
        for noise in (0.15, 0.5, 1.0):
            print(f"generated, mouth noise {noise}:", generated(args.generated, noise))


if __name__ == "__main__":
    main()
