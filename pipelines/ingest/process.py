"""One input video in, its samples and failures out.

probe -> audio (16 kHz, aligned) -> pass 1: shot cuts on every 25 fps frame, face detection on
every ``detect_every``-th -> tracks of the dominant face -> pass 2: crops of each track -> backends ->
cut into clips -> samples.
Decoding twice keeps memory at one chunk of frames whatever the video's length.

Several backends share one decode, one tracking and one cut: each crop goes to every backend, a
frame unusable for any backend is unusable for all, and a clip dropped for one backend is dropped
for all, so every clip gives one sample per backend with the same key, frames and audio.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from voxmesh.metrics.quality import jitter, lip_motion
from voxmesh.metrics.sync import estimate_offset
from voxmesh.pipelines.ingest.audio import load_audio
from voxmesh.pipelines.ingest.clips import ClipRules, frame_problems, reason_for_no_clip, segment
from voxmesh.pipelines.ingest.faces import FaceDetector, FacePass, Track, TrackRules, build_tracks, crop, crop_transform
from voxmesh.pipelines.ingest.frames import iter_frames
from voxmesh.pipelines.ingest.item import InputItem
from voxmesh.pipelines.ingest.probe import MediaError, local_path, probe
from voxmesh.recon import Reconstruction, ReconstructionBackend
from voxmesh.schemas import FPS, SAMPLES_PER_FRAME, FailureRecord, Reason, Sample, SampleMeta, Stage, make_key


@dataclasses.dataclass
class InputResult:
    """What one input gave: its samples (when no sink took them; per clip, one per backend in the
    backends' order), failures, frames decoded, clips kept (``n_samples``: per backend)."""

    samples: list[Sample]
    failures: list[FailureRecord]
    n_frames: int = 0
    n_samples: int = 0


def failure(item: InputItem, stage: Stage, reason: Reason, detail: str) -> FailureRecord:
    return FailureRecord(item.uri, item.input_id, stage.value, reason.value, detail)


def process_input(item: InputItem, split: str, backend: ReconstructionBackend | Sequence[ReconstructionBackend],
                  detector: FaceDetector, clip_rules: ClipRules, track_rules: TrackRules = TrackRules(),
                  chunk_size: int = 64, sink: Callable[[Sample], None] | None = None) -> InputResult:
    """Everything one input yields, for one backend or several (``sample.meta.backend`` tells
    them apart). Samples go to ``sink`` as each track is done (so that memory does not grow with
    the video's length), or into ``result.samples`` without a sink. When the result has failures,
    the input gave no usable sample and anything already sent to the sink must be discarded.
    Media problems become failures; other exceptions propagate (the caller records them as
    ``internal_error``)."""
    backends = [backend] if isinstance(backend, ReconstructionBackend) else list(backend)
    collected: list[Sample] = []
    emit = sink or collected.append
    try:
        with local_path(item.location) as path:
            info = probe(path)
            if info.audio_sample_rate == 0:
                return InputResult([], [failure(item, Stage.PROBE, Reason.NO_AUDIO_STREAM,
                                                f"{item.uri}: no audio stream; voxmesh needs the speech")])
            if 0 < info.duration < clip_rules.min_seconds:
                return InputResult([], [failure(item, Stage.PROBE, Reason.TOO_SHORT,
                                                f"{item.uri}: {info.duration:.2f} s < min clip {clip_rules.min_seconds} s")])
            audio = load_audio(path, info.video_start)
            pcm, audio_offset = audio.pcm, audio.offset
            seen = FacePass.run(iter_frames(path, chunk_size), detector, track_rules)
            tracks, problems = build_tracks(seen, track_rules)
            n_frames = len(seen.boxes)
            if n_frames == 0:
                return InputResult([], [failure(item, Stage.DECODE, Reason.DECODE_ERROR, f"{item.uri}: no video frames")])
            has_audio = (np.arange(1, n_frames + 1) * SAMPLES_PER_FRAME) <= len(pcm)
            kept = 0
            dropped_offsets: list[str] = []
            for track, recons in iter_track_reconstructions(path, tracks, backends, track_rules, chunk_size):
                span = slice(track.start, track.end)
                problems[span] = _first_problems([frame_problems(r.n_faces, r.valid, r.confidence, has_audio[span],
                                                                 clip_rules) for r in recons])
                usable = np.array([p is None for p in problems[span]])
                clips = segment(usable, int(round(clip_rules.min_seconds * FPS)), int(round(clip_rules.max_seconds * FPS)))
                for clip_index, (start, end) in enumerate(clips):
                    samples = [_sample(item, split, b, track, r, pcm, audio_offset, clip_index, start, end, clip_rules)
                               for b, r in zip(backends, recons)]
                    flagged = [s.meta for s in samples if not s.meta.av_offset_ok]
                    if clip_rules.drop_av_offset and flagged:
                        dropped_offsets.append(f"{flagged[0].av_offset:+d} (confidence {flagged[0].av_offset_confidence:.1f})")
                        continue
                    for sample in samples:
                        emit(sample)
                    kept += 1
    except MediaError as error:
        detail = error.detail.replace(item.location, item.uri)  # no path of the build machine in the data
        detail = detail if detail.startswith(item.uri) else f"{item.uri}: {detail}"
        return InputResult([], [failure(item, error.stage, error.reason, detail)])
    if not kept and dropped_offsets:
        listed = ", ".join(dropped_offsets)
        return InputResult([], [failure(item, Stage.SEGMENT, Reason.AV_OFFSET,
                                        f"{item.uri}: every clip's audio-visual offset is confidently beyond "
                                        f"{clip_rules.max_av_offset} frames ({listed}); check the file's sync or raise "
                                        f"--max-av-offset")],
                           n_frames)
    if not kept:
        reason = reason_for_no_clip(problems)
        usable_frames = sum(p is None for p in problems)
        return InputResult([], [failure(item, Stage.SEGMENT, reason,
                                        f"{item.uri}: no clip of {clip_rules.min_seconds} s or more "
                                        f"({usable_frames} of {n_frames} frames usable, {len(tracks)} face tracks)")],
                           n_frames)
    return InputResult(collected, [], n_frames, kept)


def _first_problems(per_backend: list[list[Reason | None]]) -> list[Reason | None]:
    """Per frame, the first backend's problem (None where every backend can use the frame)."""
    return [next((p for p in frame if p is not None), None) for frame in zip(*per_backend)]


def iter_track_reconstructions(path: str, tracks: list[Track], backends: Sequence[ReconstructionBackend],
                               track_rules: TrackRules, chunk_size: int) -> Iterator[tuple[Track, list[Reconstruction]]]:
    """Pass 2: crop every frame of every track (tracks never overlap in time), reconstruct the
    crops in chunks with every backend, resetting the backends at each new track, and yield each
    track's results (one per backend, in source pixels, after ``finish_track``) as soon as its
    last frame is done."""
    if not tracks:
        return
    track_of = {t: track for track in tracks for t in range(track.start, track.end)}
    parts: list[list[Reconstruction]] = [[] for _ in backends]
    batch: list[np.ndarray] = []
    transforms: list[tuple[float, float, float]] = []

    def flush() -> None:
        if batch:
            crops, to_source = np.stack(batch), np.array(transforms)
            for backend, done in zip(backends, parts):
                done.append(backend.reconstruct(crops).to_source(to_source))
            batch.clear()
            transforms.clear()

    def finished(track: Track) -> tuple[Track, list[Reconstruction]]:
        flush()
        results = [b.finish_track(Reconstruction.concatenate(done)) for b, done in zip(backends, parts)]
        for done in parts:
            done.clear()
        return track, results

    t, current = 0, None
    for chunk in iter_frames(path, chunk_size):
        for frame in chunk:
            track = track_of.get(t)
            t += 1
            if track is not current and current is not None:
                yield finished(current)
                current = None
            if track is None:
                continue
            if current is None:
                for backend in backends:
                    backend.reset()
                current = track
            transform = crop_transform(track.box(t - 1), track_rules)
            batch.append(crop(frame, transform, track_rules.crop_size))
            transforms.append(transform)
            if len(batch) == chunk_size:
                flush()
        if t >= tracks[-1].end:
            break
    if current is not None:
        yield finished(current)


def _sample(item: InputItem, split: str, backend: ReconstructionBackend, track: Track, recon: Reconstruction,
            pcm: np.ndarray, audio_offset: float, clip_index: int, start: int, end: int, clip_rules: ClipRules) -> Sample:
    """The sample of frames ``start..end-1`` of ``track`` (indices relative to the track)."""
    topology = backend.topology
    first, last = track.start + start, track.start + end
    mesh = recon.mesh[start:end]
    clip_audio = pcm[first * SAMPLES_PER_FRAME:last * SAMPLES_PER_FRAME]
    offset = estimate_offset(mesh, clip_audio, topology)
    meta = SampleMeta(
        key=make_key(item.speaker, item.video, item.utterance, track.index, clip_index), split=split,
        speaker=item.speaker, video=item.video, utterance=item.utterance, track=track.index, clip=clip_index,
        source_uri=item.uri, start_time=first / FPS, end_time=last / FPS, n_frames=end - start,
        n_samples=(end - start) * SAMPLES_PER_FRAME, backend=backend.name, backend_version=backend.version,
        topology=topology.name, confidence_mean=round(float(recon.confidence[start:end].mean()), 6),
        lip_motion=round(lip_motion(mesh, topology.lip_idx), 6),
        jitter=round(jitter(mesh, topology.upper_face_idx), 6), av_offset=offset.offset,
        av_offset_confidence=round(offset.confidence, 6), av_offset_reason=offset.reason,
        av_offset_ok=offset.offset is None or abs(offset.offset) <= clip_rules.max_av_offset,
        audio_start_offset=round(audio_offset, 6))
    return Sample(meta=meta, mesh=mesh, pose=recon.pose[start:end], audio=clip_audio, lmk2d=recon.lmk2d[start:end],
                  coeffs=None if recon.coeffs is None else recon.coeffs[start:end])
