"""Probe a media file: what its container says, the first video frame's time and rotation, and
the helpers that open and decode its streams. Errors are :class:`MediaError` values carrying a
:class:`~voxmesh.schemas.Reason`, so that the caller can turn them into failure records.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import struct
from collections.abc import Iterator
from fractions import Fraction

import av

from voxmesh.schemas import Reason, Stage, storage
from voxmesh.schemas.errors import UserError


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
    video_start: float        # presentation time of the first video frame, seconds (0 when none decodes)
    rotation: int             # display rotation, counter-clockwise degrees (frames are turned by it)
    audio_sample_rate: int    # 0 when there is no audio stream


def header_duration(path: str) -> float:
    """Seconds, from the file's header alone, for planning: an ISO base media file's (mp4, mov,
    m4v) ``mvhd`` box, read without opening a demuxer (well under a millisecond), else the
    container's duration as FFmpeg reads it. 0 when unknown or unreadable."""
    try:
        with open(path, "rb") as f:
            seconds = _mvhd_seconds(f, os.fstat(f.fileno()).st_size)
        if seconds is None:
            with av.open(path) as container:
                seconds = float(container.duration or 0) / av.time_base
    except (OSError, ValueError, av.error.FFmpegError):
        return 0.0
    return max(seconds, 0.0)


def _mvhd_seconds(f, size: int) -> float | None:
    moov = _find_box(f, 0, size, b"moov")
    mvhd = _find_box(f, *moov, b"mvhd") if moov else None
    if mvhd is None:
        return None
    f.seek(mvhd[0])
    head = f.read(32)
    if len(head) < 32:
        return None
    # full box: version, flags, then creation and modification times (32 or 64 bits), timescale, duration
    timescale, duration = struct.unpack(">IQ", head[20:32]) if head[0] == 1 else struct.unpack(">II", head[12:20])
    return duration / timescale if timescale else None


def _find_box(f, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    """(body start, box end) of the first box of type ``kind`` among the boxes in ``start..end``."""
    position = start
    while position + 8 <= end:
        f.seek(position)
        header = f.read(16)
        if len(header) < 8:
            return None
        size, name = struct.unpack(">I4s", header[:8])
        body = position + 8
        if size == 1 and len(header) == 16:
            size, body = struct.unpack(">Q", header[8:16])[0], position + 16
        elif size == 0:
            size = end - position
        if size < body - position:
            return None
        if name == kind:
            return body, position + size
        position += size
    return None


@contextlib.contextmanager
def local_path(uri: str) -> Iterator[str]:
    """A local file path for ``uri``: the path itself, or a temporary copy of a file-system URI
    (``gs://``, ``s3://``) read through ``storage``, removed afterwards. A URI that cannot be read
    (gone since discovery, say) is a ``missing_file`` MediaError; a MediaError raised while the
    copy is in use names ``uri`` instead of the copy."""
    with contextlib.ExitStack() as stack:
        try:
            path = stack.enter_context(storage.local_copy(uri))
        except (UserError, OSError) as error:
            raise MediaError(Reason.MISSING_FILE, Stage.PROBE, f"{uri}: cannot be read ({error})") from error
        try:
            yield path
        except MediaError as error:  # name the input, not its temporary copy (details must not vary)
            raise MediaError(error.reason, error.stage, error.detail.replace(path, uri)) from error


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
                average_fps=float(video.average_rate or 0),
                video_start=video_start, rotation=rotation,
                audio_sample_rate=audio.sample_rate if audio else 0)
    except av.error.FFmpegError as error:
        raise MediaError(Reason.NOT_A_VIDEO, Stage.PROBE, f"{path}: not a readable media file ({error})") from error


def _first_frame(container, stream) -> tuple[float, int]:
    """``(start, rotation)`` of the first decodable video frame with a timestamp: its presentation
    time in seconds and the display rotation FFmpeg reports on it; ``(0.0, 0)`` if none decodes."""
    try:
        for frame in container.decode(stream):
            if frame.pts is not None:
                return seconds(frame.pts, stream.time_base), int(frame.rotation or 0)
    except av.error.FFmpegError:
        pass
    return 0.0, 0


# The longest stretch of a stream without a frame, or between the first video frame and the first
# audio sample, that a file may have. A longer one is damaged timestamps, not a still picture or a
# late start: filling it (one frame repeated at every 25 fps tick, or silence) would cost time and
# memory without bound, so the input fails with a reason instead.
MAX_STREAM_GAP_SECONDS = 10.0


def seconds(pts: int, time_base: Fraction) -> float:
    return float(pts * time_base)


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
