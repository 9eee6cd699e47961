"""Decode a video's frames at exactly 25 fps, upright: RGB in bounded chunks, or as decoded (I420 planes)."""

from __future__ import annotations

from collections.abc import Iterator

import av
import cv2
import numpy as np

from voxmesh.pipelines.ingest.probe import MAX_STREAM_GAP_SECONDS, MediaError, decoded_until_broken, seconds
from voxmesh.schemas import FPS, Reason, Stage


def iter_frames(path: str, chunk_size: int = 64) -> Iterator[np.ndarray]:
    """Yield the video as RGB chunks (n, H, W, 3) uint8 of at most ``chunk_size`` frames (and
    64 MiB) at 25 fps.

    Output frame ``i`` is the decoded frame whose presentation time is nearest to ``i / 25`` s after
    the first frame (the earlier one on a tie), whatever the source rate (constant, 29.97, VFR).
    The last output frame is the last ``i`` with ``i / 25`` before the end of the last source frame.
    Only the frames that are emitted are converted to RGB. Memory is one chunk: the yielded array
    is a view of a buffer that the next chunk overwrites (copy it to keep it). A stream that breaks
    off (a truncated or corrupt file) ends at its last good frame; one whose timestamps jump by
    more than ``MAX_STREAM_GAP_SECONDS`` raises :class:`MediaError` (``decode_error``).
    """
    buffer = ChunkBuffer(chunk_size)
    for image in iter_images(path):
        if buffer.add(image):
            yield buffer.take()
    if buffer.count:
        yield buffer.take()


def iter_images(path: str) -> Iterator[np.ndarray]:
    """The video's frames at 25 fps (as :func:`iter_frames` picks them), one RGB (H, W, 3) uint8
    array each, a new array per frame (safe to keep). The size may not change mid-stream."""
    return (rgb(image) for image in iter_decoded(path))


def iter_decoded(path: str) -> Iterator[DecodedImage]:
    """:func:`iter_images`' frames as they were decoded: an :class:`I420Frame` where OpenCV
    converts the frame (see :func:`to_rgb`) and it needs no turning, an RGB array otherwise.
    Ingest converts only what it uses (crops, looked-at frames): see :class:`I420Frame`."""
    shape = None
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            for frame in _frames_at_25fps(container, stream):
                planar = _opencv_converts(frame) and not frame.rotation
                image = I420Frame(frame.to_ndarray(format="yuv420p")) if planar else upright(frame)
                if shape is not None and image.shape != shape:
                    raise ValueError(f"frame size changed from {shape[:2]} to {image.shape[:2]} mid-stream")
                shape = image.shape
                yield image
    except (av.error.FFmpegError, ValueError) as error:
        raise MediaError(Reason.DECODE_ERROR, Stage.DECODE, f"{path}: video decoding failed ({error})") from error


class I420Frame:
    """A decoded 8-bit 4:2:0 frame that :func:`to_rgb` converts by OpenCV, kept as its planes
    (``i420``: (3 H / 2, W) uint8, the Y plane then U then V): half the bytes of RGB. :meth:`rgb`
    gives exactly :func:`to_rgb`'s values; a crop converts only its own resized planes
    (:func:`~voxmesh.pipelines.ingest.faces.crop`), which costs 0.10-0.11 against 0.18 ms for
    converting the whole 512x512 frame and cropping it, 0.21-0.22 against 0.37-0.43 at 844x844."""

    def __init__(self, i420: np.ndarray):
        self.i420 = i420
        self.height, self.width = i420.shape[0] * 2 // 3, i420.shape[1]
        self.shape = (self.height, self.width, 3)

    @property
    def luma(self) -> np.ndarray:
        return self.i420[:self.height]

    @property
    def chroma(self) -> tuple[np.ndarray, np.ndarray]:
        """The U and V planes, (H / 2, W / 2) each."""
        half = (self.height // 2, self.width // 2)
        planes = self.i420[self.height:].reshape(2, *half)
        return planes[0], planes[1]

    def rgb(self) -> np.ndarray:
        return cv2.cvtColor(self.i420, cv2.COLOR_YUV2RGB_I420)


DecodedImage = np.ndarray | I420Frame  # a decoded frame: RGB (H, W, 3) uint8, or its I420 planes


def rgb(image: DecodedImage) -> np.ndarray:
    """A decoded frame as an RGB (H, W, 3) uint8 array."""
    return image.rgb() if isinstance(image, I420Frame) else image


def upright(frame: av.VideoFrame) -> np.ndarray:
    """The frame as RGB, turned by its display rotation (counter-clockwise degrees) so that it
    looks as a player shows it."""
    image = to_rgb(frame)
    return np.rot90(image, k=(frame.rotation or 0) // 90) if frame.rotation else image


# AVColorSpace values that mean BT.601 (unspecified, BT470BG, SMPTE170M) and AVColorRange values
# that mean limited range (unspecified, MPEG): what swscale assumes for an untagged frame.
_BT601_SPACES = (2, 5, 6)
_LIMITED_RANGES = (0, 1)


def to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """The frame as (H, W, 3) RGB uint8. The usual case, 8-bit 4:2:0 BT.601 limited range with
    even sides (VoxCeleb2's files, most H.264), is converted by OpenCV, which takes half the time
    of swscale (0.17 against 0.34 ms per 224x224 frame, 1.35 against 1.93 at 844x844); its values
    are within a few levels of swscale's (it upsamples chroma differently). Anything else goes
    through swscale."""
    if _opencv_converts(frame):
        return I420Frame(frame.to_ndarray(format="yuv420p")).rgb()
    return frame.to_ndarray(format="rgb24")


def _opencv_converts(frame: av.VideoFrame) -> bool:
    return (frame.format.name == "yuv420p" and frame.colorspace in _BT601_SPACES
            and frame.color_range in _LIMITED_RANGES and frame.width % 2 == 0 and frame.height % 2 == 0)


def _frames_at_25fps(container, stream) -> Iterator[av.VideoFrame]:
    """The decoded frames picked for each 25 fps tick (a frame repeats when the source is slower)."""
    first = previous = None
    index = 0
    for frame in decoded_until_broken(container, stream):
        if frame.pts is None:
            continue
        if first is None:
            first = frame.pts
        now = seconds(frame.pts - first, stream.time_base)
        if previous is not None and now - previous[0] > MAX_STREAM_GAP_SECONDS:
            raise ValueError(f"the timestamps jump by {now - previous[0]:.1f} s after {previous[0]:.2f} s; "
                             f"re-encode the file or cut it there")
        while index / FPS <= now:
            target = index / FPS
            if previous is not None and target - previous[0] <= now - target:
                yield previous[1]
            else:
                yield frame
            index += 1
        previous = (now, frame)
    if previous is not None:
        # at least 1 fps: a damaged rate must not repeat the last frame for minutes
        frame_duration = 1.0 / max(float(stream.average_rate or FPS), 1.0)
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
        if self.array is None or self.array.shape[1:] != image.shape:
            frames = max(1, min(self.chunk_size, MAX_CHUNK_BYTES // image.nbytes))
            self.array = np.empty((frames, *image.shape), dtype=image.dtype)
        self.array[self.count] = image
        self.count += 1
        return self.count == len(self.array)

    def take(self) -> np.ndarray:
        if self.array is None:
            raise ValueError("take() before any add()")
        chunk, self.count = self.array[:self.count], 0
        return chunk

