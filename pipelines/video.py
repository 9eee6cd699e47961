"""One input video in, its samples and failures out: probe, decode, reconstruct, cut, align."""

from __future__ import annotations

import dataclasses

import numpy as np

from voxmesh.metrics.quality import jitter, lip_motion
from voxmesh.metrics.sync import estimate_offset
from voxmesh.recon import Reconstruction, ReconstructionBackend
from voxmesh.schemas import (FPS, SAMPLES_PER_FRAME, FailureRecord, Reason, Sample, SampleMeta, Stage,
                             make_key)

from .clips import ClipRules, frame_problems, reason_for_no_clip, segment
from .inputs import InputItem
from .media import MediaError, iter_frames, load_audio, local_path, probe


@dataclasses.dataclass
class VideoResult:
    samples: list[Sample]
    failures: list[FailureRecord]
    n_frames: int = 0


def failure(item: InputItem, stage: Stage, reason: Reason, detail: str) -> FailureRecord:
    return FailureRecord(item.uri, item.input_id, stage.value, reason.value, detail)


def process_video(item: InputItem, split: str, backend: ReconstructionBackend, rules: ClipRules,
                  chunk_size: int = 64) -> VideoResult:
    """Everything one input yields. Media problems become failures; other exceptions propagate
    (the caller records them as ``internal_error``)."""
    try:
        with local_path(item.uri) as path:
            info = probe(path)
            if info.audio_sample_rate == 0:
                return VideoResult([], [failure(item, Stage.PROBE, Reason.NO_AUDIO_STREAM,
                                                f"{item.uri}: no audio stream; voxmesh needs the speech")])
            if 0 < info.duration < rules.min_seconds:
                return VideoResult([], [failure(item, Stage.PROBE, Reason.TOO_SHORT,
                                                f"{item.uri}: {info.duration:.2f} s < min clip {rules.min_seconds} s")])
            audio = load_audio(path)
            backend.reset()
            parts = [backend.reconstruct(chunk) for chunk in iter_frames(path, chunk_size)]
    except MediaError as error:
        detail = error.detail if error.detail.startswith(item.uri) else f"{item.uri}: {error.detail}"
        return VideoResult([], [failure(item, error.stage, error.reason, detail)])
    if not parts:
        return VideoResult([], [failure(item, Stage.DECODE, Reason.DECODE_ERROR, f"{item.uri}: no video frames")])
    recon = Reconstruction.concatenate(parts)
    n_frames = len(recon.n_faces)
    has_audio = (np.arange(1, n_frames + 1) * SAMPLES_PER_FRAME) <= len(audio.samples)
    problems = frame_problems(recon.n_faces, recon.valid, recon.confidence, recon.face_size, has_audio, rules)
    usable = np.array([p is None for p in problems])
    clips = segment(usable, int(round(rules.min_seconds * FPS)), int(round(rules.max_seconds * FPS)))
    if not clips:
        reason = reason_for_no_clip(problems)
        return VideoResult([], [failure(item, Stage.SEGMENT, reason,
                                        f"{item.uri}: no clip of {rules.min_seconds} s or more "
                                        f"({int(usable.sum())} of {n_frames} frames usable)")], n_frames)
    pcm = np.clip(np.round(audio.samples * 32767.0), -32768, 32767).astype(np.int16)
    samples = [_sample(item, split, backend, recon, pcm, clip_index, start, end, rules)
               for clip_index, (start, end) in enumerate(clips)]
    return VideoResult(samples, [], n_frames)


def _sample(item: InputItem, split: str, backend: ReconstructionBackend, recon: Reconstruction,
            pcm: np.ndarray, clip_index: int, start: int, end: int, rules: ClipRules) -> Sample:
    topology = backend.topology
    mesh = recon.mesh[start:end]
    audio = pcm[start * SAMPLES_PER_FRAME:end * SAMPLES_PER_FRAME]
    offset = estimate_offset(mesh, audio, topology)
    meta = SampleMeta(
        key=make_key(item.speaker, item.video, item.utterance, 0, clip_index), split=split,
        speaker=item.speaker, video=item.video, utterance=item.utterance, track=0, clip=clip_index,
        source_uri=item.uri, start_time=start / FPS, end_time=end / FPS, n_frames=end - start,
        n_samples=(end - start) * SAMPLES_PER_FRAME, backend=backend.name, backend_version=backend.version,
        topology=topology.name, confidence_mean=round(float(recon.confidence[start:end].mean()), 6),
        lip_motion=round(lip_motion(mesh, topology.lip_idx), 6),
        jitter=round(jitter(mesh, topology.upper_face_idx), 6), av_offset=offset.offset,
        av_offset_confidence=round(offset.confidence, 6), av_offset_ok=abs(offset.offset) <= rules.max_av_offset)
    return Sample(meta=meta, mesh=mesh, pose=recon.pose[start:end], audio=audio, lmk2d=recon.lmk2d[start:end],
                  coeffs=None if recon.coeffs is None else recon.coeffs[start:end])
