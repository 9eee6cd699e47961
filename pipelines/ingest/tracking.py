"""Tracks of the dominant face, built online while a video streams (see :class:`OnlineTracker`)."""

from __future__ import annotations

import collections
import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from voxmesh.schemas import Reason
from voxmesh.schemas.errors import ConfigError

if TYPE_CHECKING:
    from voxmesh.pipelines.ingest.frames import DecodedImage


@dataclasses.dataclass(frozen=True)
class TrackRules:
    comparable_area: float = 0.5   # a second face this large (relative area) makes a frame ambiguous
    detect_every: int = 5          # face detection on every n-th frame of a shot (the detector is the costliest step)
    short_range_face: float = 0.3  # a shot whose face is this large (side / frame's long side) is looked at with
                                   # the short-range detector (0: never); see faces.FaceLooks
    min_iou: float = 0.3           # box overlap that continues a track from one observation to the next
    max_gap: int = 14              # frames without a detection that a track bridges (two missed looks at every 5th)
    smooth_frames: int = 9         # centred moving average of box centre and size
    crop_scale: float = 1.8        # crop side / largest side of the box
    crop_size: int = 256           # crops are crop_size x crop_size pixels
    cut_threshold: float = 25.0    # mean absolute thumbnail change (0-255) that may be a cut
    cut_ratio: float = 4.0         # ... and how many times the recent median change it must be
    min_face_pixels: float = 48.0  # box height below which a face is too small
    max_track_frames: int = 1000   # longer tracks are cut into equal parts (bounds memory per track)

    def __post_init__(self):
        if self.detect_every < 1:
            raise ConfigError(f"--detect-every must be 1 or more (got {self.detect_every})")
        if not 0 <= self.short_range_face <= 1:
            raise ConfigError(f"--short-range-face must be between 0 and 1 (got {self.short_range_face})")


def area(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], 0) * max(box[3] - box[1], 0))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inner = np.concatenate([np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])])
    intersection = area(inner)
    union = area(a) + area(b) - intersection
    return intersection / union if union > 0 else 0.0



@dataclasses.dataclass
class TrackedFrame:
    """One frame once its track is decided: ``run`` (the index of its run of the dominant face)
    and its smoothed ``box``, or None and ``status`` (why it is in no run). ``second_face``: the
    frame was not looked at and the next look of its shot saw two comparable faces, so a second
    face may be in it (it must not be used). ``ends_run``: the last frame of its run."""

    t: int
    image: DecodedImage | None
    status: Reason | None
    run: int | None = None
    box: np.ndarray | None = None
    second_face: bool = False
    ends_run: bool = False


@dataclasses.dataclass
class _Pending:
    t: int
    image: DecodedImage | None
    looked_at: bool
    status: Reason | None           # the frame's own look, or the last look before it
    run: _Run | None = None
    next_look: Reason | None = None  # status of the next look of the same shot (frames not looked at)


@dataclasses.dataclass
class _Run:
    index: int
    start: int
    last_t: int                      # the last frame with a detection of the run's face
    last_box: np.ndarray
    filled: dict[int, np.ndarray]    # boxes interpolated between detections, for frames still needed
    hold_end: int | None = None      # the first look or cut after last_t
    end: int | None = None           # set when the run can grow no more


class OnlineTracker:
    """Tracks of the dominant face built while the video streams, with a short lookahead.

    Feed every frame in order (:meth:`push`: cut or not, the boxes when looked at); each call
    returns the frames whose track is now decided, in order. The rules: the dominant face is
    followed by box overlap (IoU >= ``min_iou``) across up to ``max_gap`` frames without a
    detection; a shot cut, a look with two comparable faces or a too small face, a jump of the
    box, or a longer gap ends a run, and a run holds its last box through the frames up to the
    next look. Boxes are interpolated between detections and smoothed by a centred mean over
    ``smooth_frames`` (the window shrinks at the run's ends). A frame not looked at has the status
    of the last look. A frame is decided once the run's detections reach ``smooth_frames // 2``
    frames past it or the run ends, so frames wait at most about ``max_gap + smooth_frames``
    frames (or ``detect_every`` if larger).

    :meth:`look_back` adds a look at the last frame pushed (the end of a shot that was not
    looked at) whose only use is the ``second_face`` flag of the frames before it.
    """

    def __init__(self, track_rules: TrackRules):
        self.rules = track_rules
        self.half = track_rules.smooth_frames // 2
        self.pending: collections.deque[_Pending] = collections.deque()
        self.unlooked: list[_Pending] = []  # frames since the last look of this shot
        self.run: _Run | None = None
        self.n_runs = self.t = 0
        self.status: Reason | None = Reason.NO_FACE

    def push(self, cut: bool, look: tuple[Reason | None, np.ndarray | None] | None,
             image: DecodedImage | None = None) -> list[TrackedFrame]:
        """Frame ``t``: whether it starts a shot, and when it was looked at, the look's status and
        the dominant face's box (:func:`~voxmesh.pipelines.ingest.faces.frame_status`)."""
        t, self.t = self.t, self.t + 1
        looked_at = look is not None
        if cut:
            self.unlooked = []
        run = self.run
        if run is not None and run.hold_end is None and (looked_at or cut):
            run.hold_end = t
        box = None
        if look is not None:
            self.status, box = look
            self._set_next_look(self.status)
        frame = _Pending(t, image, looked_at, self.status)
        self.pending.append(frame)
        if not looked_at:
            self.unlooked.append(frame)
        if cut and run is not None:
            self._close(run)
            run = None
        if box is None:
            if looked_at and self.status is not Reason.NO_FACE and run is not None:
                self._close(run)
        elif (run is not None and t - run.last_t - 1 <= self.rules.max_gap
              and _iou(box, run.last_box) >= self.rules.min_iou):
            self._extend(run, t, box)
        else:
            if run is not None:
                self._close(run)
            self._start(t, box)
        run = self.run
        if run is not None and run.hold_end is not None and t - run.last_t - 1 >= self.rules.max_gap:
            self._close(run)  # no later detection can continue it
        return self._decide()

    def look_back(self, status: Reason | None) -> None:
        self._set_next_look(status)

    def finish(self) -> list[TrackedFrame]:
        """The remaining frames, at the end of the video."""
        if self.run is not None:
            self._close(self.run)
        return self._decide()

    def _set_next_look(self, status: Reason | None) -> None:
        for frame in self.unlooked:
            frame.next_look = status
        self.unlooked = []

    def _start(self, t: int, box: np.ndarray) -> None:
        self.run = _Run(self.n_runs, t, t, box, {t: box})
        self.n_runs += 1
        self.pending[-1].run = self.run

    def _extend(self, run: _Run, t: int, box: np.ndarray) -> None:
        slope = (box - run.last_box) / (t - run.last_t)
        for u in range(run.last_t + 1, t + 1):
            run.filled[u] = slope * (u - run.last_t) + run.last_box
        self._assign(run, run.last_t + 1, t + 1)
        run.last_t, run.last_box, run.hold_end = t, box, None

    def _close(self, run: _Run) -> None:
        """The open run ends where it was last held: at the first look or cut after its last
        detection, or at the end of the video."""
        self.run = None
        end = run.end = self.t if run.hold_end is None else run.hold_end
        for u in range(run.last_t + 1, end):
            run.filled[u] = run.last_box
        self._assign(run, run.last_t + 1, end)

    def _assign(self, run: _Run, first: int, end: int) -> None:
        """Frames ``first..end-1`` (all still pending) belong to ``run``."""
        for frame in reversed(self.pending):
            if frame.t < first:
                break
            if frame.t < end:
                frame.run = run

    def _decide(self) -> list[TrackedFrame]:
        decided = []
        while self.pending:
            frame = self.pending[0]
            run = frame.run
            if run is not None and run.end is None and run.last_t < frame.t + self.half:
                break
            if run is None and self.run is not None and self.run.last_t < frame.t:
                break  # the open run may still reach it
            self.pending.popleft()
            decided.append(self._tracked(frame))
        return decided

    def _tracked(self, frame: _Pending) -> TrackedFrame:
        run = frame.run
        if run is None:
            return TrackedFrame(frame.t, frame.image, frame.status)
        high = frame.t + self.half + 1 if run.end is None else min(run.end, frame.t + self.half + 1)
        box = np.mean([run.filled[u] for u in range(max(run.start, frame.t - self.half), high)], axis=0)
        run.filled.pop(frame.t - self.half, None)
        second_face = not frame.looked_at and frame.next_look is Reason.MULTIPLE_FACES
        return TrackedFrame(frame.t, frame.image, None, run.index, box, second_face,
                            ends_run=run.end is not None and frame.t == run.end - 1)
