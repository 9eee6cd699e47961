"""Decode a file's speech as 16 kHz mono int16 PCM on the clock of its first video frame, and
encode speech into a container."""

from __future__ import annotations

import dataclasses

import av
import numpy as np
import soxr

from voxmesh.pipelines.ingest.probe import MAX_STREAM_GAP_SECONDS, MediaError, decoded_until_broken, probe, seconds
from voxmesh.schemas import SAMPLE_RATE, Reason, Stage, float_to_pcm, pcm_to_float


@dataclasses.dataclass(frozen=True)
class Audio:
    """16 kHz mono speech as the int16 PCM that ``audio.npy`` stores; sample ``j`` plays at
    ``j / 16000`` s after the first video frame. ``offset`` is the audio stream's start minus the
    first video frame's time, in seconds (positive: the audio starts later, and was padded with
    silence)."""

    pcm: np.ndarray
    offset: float

    @property
    def samples(self) -> np.ndarray:
        """The speech as float32 in [-1, 1) (a new array on each call)."""
        return pcm_to_float(self.pcm)


def _as_float(data: np.ndarray) -> np.ndarray:
    """PCM of any FFmpeg sample format as float32 in [-1, 1]."""
    if data.dtype.kind == "i":
        return data.astype(np.float32) / np.float32(-np.iinfo(data.dtype).min)
    if data.dtype.kind == "u":
        middle = np.float32(np.iinfo(data.dtype).max // 2 + 1)
        return (data.astype(np.float32) - middle) / middle
    return data.astype(np.float32)


class PcmBuffer:
    """An int16 array appended to in place. It is sized from the container's duration up front,
    so that a long stream makes one allocation of its final size (the capacity doubles only when
    the container under-reports), and it never holds the whole stream as float."""

    def __init__(self, capacity: int):
        self.array = np.empty(max(capacity, 1), dtype=np.int16)
        self.size = 0

    def append(self, values: np.ndarray) -> None:
        """Append float samples in [-1, 1], converted to PCM."""
        if self.size + len(values) > len(self.array):
            grown = np.empty(max(2 * len(self.array), self.size + len(values)), dtype=np.int16)
            grown[:self.size] = self.array[:self.size]
            self.array = grown
        self.array[self.size:self.size + len(values)] = float_to_pcm(values)
        self.size += len(values)

    def take(self, skip: int = 0) -> np.ndarray:
        """The samples after the first ``skip`` (a view)."""
        return self.array[min(skip, self.size):self.size]


def load_audio(path: str, video_start: float | None = None, *, own_clock: bool = False) -> Audio:
    """Decode the first audio stream, mix to mono, resample to 16 kHz (soxr, very high quality,
    streaming) and align it to the first video frame, whose time ``video_start`` is probed when
    not given: an audio stream that starts later is padded with silence, one that starts earlier
    is cut (one that starts more than ``MAX_STREAM_GAP_SECONDS`` later raises ``av_offset``).
    With ``own_clock`` (a speech file on its own) the audio starts at its first sample, whatever
    its timestamps, and ``video_start`` is not used. Memory is the int16 result plus one decoded
    frame. Raises :class:`MediaError`."""
    if video_start is None and not own_clock:
        video_start = probe(path).video_start
    try:
        with av.open(path) as container:
            if not container.streams.audio:
                raise MediaError(Reason.NO_AUDIO_STREAM, Stage.DECODE, f"{path}: no audio stream")
            stream = container.streams.audio[0]
            rate = stream.sample_rate
            resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="VHQ") \
                if rate != SAMPLE_RATE else None
            duration = float(container.duration or 0) / av.time_base
            buffer = PcmBuffer(int((duration + 1.0) * SAMPLE_RATE))
            audio_start = None
            for frame in decoded_until_broken(container, stream):
                if audio_start is None and frame.pts is not None and stream.time_base is not None:
                    audio_start = seconds(frame.pts, stream.time_base)
                    aligned_to = audio_start if own_clock or video_start is None else video_start
                    if audio_start - aligned_to > MAX_STREAM_GAP_SECONDS:
                        raise MediaError(Reason.AV_OFFSET, Stage.DECODE,
                                         f"{path}: the audio starts {audio_start - aligned_to:.1f} s after the first "
                                         f"video frame; re-encode the file or cut it there")
                    buffer.append(np.zeros(max(0, _samples(audio_start - aligned_to)), dtype=np.float32))
                data = _as_float(frame.to_ndarray())
                mono = data.mean(axis=0) if frame.format.is_planar else \
                    data.reshape(-1, len(frame.layout.channels)).mean(axis=1)
                buffer.append(resampler.resample_chunk(mono) if resampler else mono)
            if resampler:
                buffer.append(resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    except av.error.FFmpegError as error:
        raise MediaError(Reason.DECODE_ERROR, Stage.DECODE, f"{path}: audio decoding failed ({error})") from error
    if audio_start is None:
        raise MediaError(Reason.NO_AUDIO_STREAM, Stage.DECODE, f"{path}: the audio stream has no samples")
    offset = audio_start - aligned_to
    return Audio(pcm=buffer.take(skip=max(0, -_samples(offset))), offset=offset)


def _samples(seconds: float) -> int:
    return int(round(seconds * SAMPLE_RATE))


def encode_audio(container, stream, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Encode mono float ``audio`` into the output audio ``stream`` of ``container`` and flush it."""
    for start in range(0, len(audio), 1024):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[None, start:start + 1024], dtype=np.float32),
                                           format="flt", layout="mono")
        frame.sample_rate, frame.pts = sample_rate, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())
