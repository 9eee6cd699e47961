"""One input video in, its samples and failures out.

probe -> audio (16 kHz, aligned) -> pass 1: shot cuts on every 25 fps frame, face detection on
every ``detect_every``-th -> tracks of the dominant face -> pass 2: crops of each track -> backend ->
cut into clips -> samples.
Decoding twice keeps memory at one chunk of frames whatever the video's length.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

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
    """What one input gave: its samples (when no sink took them), failures, frames decoded."""

    samples: list[Sample]
    failures: list[FailureRecord]
    n_frames: int = 0
    n_samples: int = 0


def failure(item: InputItem, stage: Stage, reason: Reason, detail: str) -> FailureRecord:
    return FailureRecord(item.uri, item.input_id, stage.value, reason.value, detail)


def process_input(item: InputItem, split: str, backend: ReconstructionBackend, detector: FaceDetector,
                  clip_rules: ClipRules, track_rules: TrackRules = TrackRules(), chunk_size: int = 64,
                  sink: Callable[[Sample], None] | None = None) -> InputResult:
    """Everything one input yields. Samples go to ``sink`` as each track is done (so that memory
    does not grow with the video's length), or into ``result.samples`` without a sink. When the
    result has failures, the input gave no usable sample and anything already sent to the sink
    must be discarded. Media problems become failures; other exceptions propagate (the caller
    records them as ``internal_error``)."""
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
            dropped_offsets: list[int] = []
            for track, recon in iter_track_reconstructions(path, tracks, backend, track_rules, chunk_size):
                span = slice(track.start, track.end)
                problems[span] = frame_problems(recon.n_faces, recon.valid, recon.confidence, has_audio[span], clip_rules)
                usable = np.array([p is None for p in problems[span]])
                clips = segment(usable, int(round(clip_rules.min_seconds * FPS)), int(round(clip_rules.max_seconds * FPS)))
                for clip_index, (start, end) in enumerate(clips):
                    sample = _sample(item, split, backend, track, recon, pcm, audio_offset, clip_index, start, end,
                                     clip_rules)
                    if clip_rules.drop_av_offset and not sample.meta.av_offset_ok:
                        dropped_offsets.append(sample.meta.av_offset)
                        continue
                    emit(sample)
                    kept += 1
    except MediaError as error:
        detail = error.detail.replace(item.location, item.uri)  # no path of the build machine in the data
        detail = detail if detail.startswith(item.uri) else f"{item.uri}: {detail}"
        return InputResult([], [failure(item, error.stage, error.reason, detail)])
    if not kept and dropped_offsets:
        listed = ", ".join(f"{o:+d}" for o in dropped_offsets)
        return InputResult([], [failure(item, Stage.SEGMENT, Reason.AV_OFFSET,
                                        f"{item.uri}: every clip's audio-visual offset ({listed} frames) is beyond "
                                        f"{clip_rules.max_av_offset}; check the file's sync or raise --max-av-offset")],
                           n_frames)
    if not kept:
        reason = reason_for_no_clip(problems)
        usable_frames = sum(p is None for p in problems)
        return InputResult([], [failure(item, Stage.SEGMENT, reason,
                                        f"{item.uri}: no clip of {clip_rules.min_seconds} s or more "
                                        f"({usable_frames} of {n_frames} frames usable, {len(tracks)} face tracks)")],
                           n_frames)
    return InputResult(collected, [], n_frames, kept)


def iter_track_reconstructions(path: str, tracks: list[Track], backend: ReconstructionBackend, track_rules: TrackRules,
                               chunk_size: int) -> Iterator[tuple[Track, Reconstruction]]:
    """Pass 2: crop every frame of every track (tracks never overlap in time), reconstruct the
    crops in chunks, resetting the backend at each new track, and yield each track's result (in
    source pixels, after ``finish_track``) as soon as its last frame is done."""
    if not tracks:
        return
    track_of = {t: track for track in tracks for t in range(track.start, track.end)}
    parts: list[Reconstruction] = []
    batch: list[np.ndarray] = []
    transforms: list[tuple[float, float, float]] = []

    def flush() -> None:
        if batch:
            parts.append(backend.reconstruct(np.stack(batch)).to_source(np.array(transforms)))
            batch.clear()
            transforms.clear()

    def finished(track: Track) -> tuple[Track, Reconstruction]:
        flush()
        result = backend.finish_track(Reconstruction.concatenate(parts))
        parts.clear()
        return track, result

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
        av_offset_confidence=round(offset.confidence, 6), av_offset_ok=abs(offset.offset) <= clip_rules.max_av_offset,
        audio_start_offset=round(audio_offset, 6))
    return Sample(meta=meta, mesh=mesh, pose=recon.pose[start:end], audio=clip_audio, lmk2d=recon.lmk2d[start:end],
                  coeffs=None if recon.coeffs is None else recon.coeffs[start:end])
