"""Media ingest: probe a file, decode its frames at exactly 25 fps and its audio at 16 kHz mono,
both on the clock of the first video frame.

Decoding uses PyAV (FFmpeg inside the wheel). Errors are raised as :class:`MediaError` carrying a
:class:`~voxmesh.schemas.Reason`, so that the caller can turn them into failure records.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from fractions import Fraction
from typing import Iterator

import av
import numpy as np
import soxr

from voxmesh.schemas import FPS, SAMPLE_RATE, Reason, Stage, float_to_pcm, pcm_to_float


class MediaError(Exception):
    """A file that cannot be used, with the reason code and stage for ``failures.parquet``."""

    def __init__(self, reason: Reason, stage: Stage, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.stage = stage
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class Probe:
    """What the container says about a file, before any decoding."""

    container: str
    duration: float           # seconds, from the container (0 when it does not say)
    width: int
    height: int
    average_fps: float
    base_fps: float           # the stream's real base frame rate (differs from average for VFR)
    n_video_frames: int       # from the container index (0 when unknown)
    video_start: float        # presentation time of the first video frame, seconds (0 when none decodes)
    rotation: int             # display rotation, counter-clockwise degrees (frames are turned by it)
    audio_sample_rate: int    # 0 when there is no audio stream
    audio_channels: int


@contextlib.contextmanager
def local_path(uri: str) -> Iterator[str]:
    """A local file path for ``uri``: the path itself, or a temporary copy of a file-system URI
    (``gs://``, ``s3://``) read through Beam's file systems, removed afterwards."""
    if "://" not in uri:
        yield uri
        return
    from apache_beam.io.filesystems import FileSystems
    suffix = os.path.splitext(uri)[1]
    with tempfile.NamedTemporaryFile(suffix=suffix) as local:
        try:
            with FileSystems.open(uri) as remote:
                shutil.copyfileobj(remote, local)
        except Exception as error:  # noqa: BLE001 - every file system raises its own errors
            raise MediaError(Reason.MISSING_FILE, Stage.PROBE, f"{uri}: cannot be read ({error})")
        local.flush()
        yield local.name


def probe(path: str) -> Probe:
    """Open ``path`` and read stream parameters; raises :class:`MediaError`."""
    if not os.path.isfile(path):
        raise MediaError(Reason.MISSING_FILE, Stage.PROBE, f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise MediaError(Reason.NOT_A_VIDEO, Stage.PROBE, f"{path}: empty file")
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise MediaError(Reason.NO_VIDEO_STREAM, Stage.PROBE, f"{path}: no video stream")
            video = container.streams.video[0]
            audio = container.streams.audio[0] if container.streams.audio else None
            video_start, rotation = _first_frame(container, video)
            return Probe(
                container=container.format.name,
                duration=float(container.duration or 0) / av.time_base,
                width=video.codec_context.width, height=video.codec_context.height,
                average_fps=float(video.average_rate or 0), base_fps=float(video.base_rate or 0),
                n_video_frames=int(video.frames or 0),
                video_start=video_start, rotation=rotation,
                audio_sample_rate=audio.sample_rate if audio else 0,
                audio_channels=audio.channels if audio else 0)
    except av.error.FFmpegError as error:
        raise MediaError(Reason.NOT_A_VIDEO, Stage.PROBE, f"{path}: not a readable media file ({error})")


def _first_frame(container, stream) -> tuple[float, int]:
    """``(start, rotation)`` of the first decodable video frame with a timestamp: its presentation
    time in seconds and the display rotation FFmpeg reports on it; ``(0.0, 0)`` if none decodes."""
    try:
        for frame in container.decode(stream):
            if frame.pts is not None:
                return _seconds(frame.pts, stream.time_base), int(frame.rotation or 0)
    except av.error.FFmpegError:
        pass
    return 0.0, 0


def _seconds(pts: int, time_base: Fraction) -> float:
    return float(pts * time_base)


def iter_frames(path: str, chunk_size: int = 64) -> Iterator[np.ndarray]:
    """Yield the video as RGB chunks (n, H, W, 3) uint8 of at most ``chunk_size`` frames (and
    64 MiB) at 25 fps.

    Output frame ``i`` is the decoded frame whose presentation time is nearest to ``i / 25`` s after
    the first frame (the earlier one on a tie), whatever the source rate (constant, 29.97, VFR).
    The last output frame is the last ``i`` with ``i / 25`` before the end of the last source frame.
    Only the frames that are emitted are converted to RGB. Memory is one chunk: the yielded array
    is a view of a buffer that the next chunk overwrites (copy it to keep it). A stream that breaks
    off (a truncated or corrupt file) ends at its last good frame.
    """
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            buffer = ChunkBuffer(chunk_size)
            for frame in _frames_at_25fps(container, stream):
                if buffer.add(upright(frame)):
                    yield buffer.take()
    except (av.error.FFmpegError, ValueError) as error:
        raise MediaError(Reason.DECODE_ERROR, Stage.DECODE, f"{path}: video decoding failed ({error})")
    if buffer.count:
        yield buffer.take()


def decoded_until_broken(container, stream) -> Iterator:
    """The stream's decoded frames, ending quietly at the first corrupt packet once some frames
    came out (a file cut short keeps what it has); raising if nothing decodes at all."""
    n = 0
    try:
        for frame in container.decode(stream):
            n += 1
            yield frame
    except av.error.FFmpegError:
        if n == 0:
            raise


def encode_audio(container, stream, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Encode mono float ``audio`` into the output audio ``stream`` of ``container`` and flush it."""
    for start in range(0, len(audio), 1024):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[None, start:start + 1024], dtype=np.float32),
                                           format="flt", layout="mono")
        frame.sample_rate, frame.pts = sample_rate, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def upright(frame: av.VideoFrame) -> np.ndarray:
    """The frame as RGB, turned by its display rotation (counter-clockwise degrees) so that it
    looks as a player shows it."""
    image = frame.to_ndarray(format="rgb24")
    return np.rot90(image, k=(frame.rotation or 0) // 90) if frame.rotation else image


def _frames_at_25fps(container, stream) -> Iterator[av.VideoFrame]:
    """The decoded frames picked for each 25 fps tick (a frame repeats when the source is slower)."""
    first = previous = None
    index = 0
    for frame in decoded_until_broken(container, stream):
        if frame.pts is None:
            continue
        if first is None:
            first = frame.pts
        now = _seconds(frame.pts - first, stream.time_base)
        while index / FPS <= now:
            target = index / FPS
            nearer_previous = previous is not None and target - previous[0] <= now - target
            yield previous[1] if nearer_previous else frame
            index += 1
        previous = (now, frame)
    if previous is not None:
        frame_duration = 1.0 / float(stream.average_rate or FPS)
        while index / FPS < previous[0] + frame_duration - 1e-9:
            yield previous[1]
            index += 1


MAX_CHUNK_BYTES = 64 * 2 ** 20


class ChunkBuffer:
    """A reusable (n, H, W, 3) array filled frame by frame (no allocation per chunk); ``n`` is
    ``chunk_size`` or fewer, so that a chunk stays under 64 MiB whatever the resolution."""

    def __init__(self, chunk_size: int):
        self.chunk_size = chunk_size
        self.array: np.ndarray | None = None
        self.count = 0

    def add(self, image: np.ndarray) -> bool:
        """Store ``image``; True when the chunk is full."""
        if self.count and image.shape != self.array.shape[1:]:
            raise ValueError(f"frame size changed from {self.array.shape[1:3]} to {image.shape[:2]} mid-stream")
        if self.array is None or self.array.shape[1:] != image.shape:
            frames = max(1, min(self.chunk_size, MAX_CHUNK_BYTES // image.nbytes))
            self.array = np.empty((frames, *image.shape), dtype=image.dtype)
        self.array[self.count] = image
        self.count += 1
        return self.count == len(self.array)

    def take(self) -> np.ndarray:
        chunk, self.count = self.array[:self.count], 0
        return chunk


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


def load_audio(path: str, video_start: float | None = None) -> Audio:
    """Decode the first audio stream, mix to mono, resample to 16 kHz (soxr, very high quality,
    streaming) and align it to the first video frame, whose time ``video_start`` is probed when
    not given: an audio stream that starts later is padded with silence, one that starts earlier
    is cut. Memory is the int16 result plus one decoded frame. Raises :class:`MediaError`."""
    if video_start is None:
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
                if audio_start is None and frame.pts is not None:
                    audio_start = _seconds(frame.pts, stream.time_base)
                    buffer.append(np.zeros(max(0, _samples(audio_start - video_start)), dtype=np.float32))
                data = _as_float(frame.to_ndarray())
                mono = data.mean(axis=0) if frame.format.is_planar else \
                    data.reshape(-1, len(frame.layout.channels)).mean(axis=1)
                buffer.append(resampler.resample_chunk(mono) if resampler else mono)
            if resampler:
                buffer.append(resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    except av.error.FFmpegError as error:
        raise MediaError(Reason.DECODE_ERROR, Stage.DECODE, f"{path}: audio decoding failed ({error})")
    if audio_start is None:
        raise MediaError(Reason.NO_AUDIO_STREAM, Stage.DECODE, f"{path}: the audio stream has no samples")
    offset = audio_start - video_start
    return Audio(pcm=buffer.take(skip=max(0, -_samples(offset))), offset=offset)


def _samples(seconds: float) -> int:
    return int(round(seconds * SAMPLE_RATE))
