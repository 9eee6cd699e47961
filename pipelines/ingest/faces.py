"""Faces before reconstruction: shot cuts, face detection, tracks of the dominant face, crops.

Over a video's 25 fps frames, :class:`FaceLooks` looks for shot cuts on every frame (a content
change of a 32x32 grey thumbnail) and detects faces (MediaPipe's bundled BlazeFace: the
full-range model, or the short-range one in shots of large faces) on every ``detect_every``-th
frame of a shot, counted from the shot's first frame. Tracks of the
dominant face are built from those looks while the video streams
(:class:`~voxmesh.pipelines.ingest.tracking.OnlineTracker`, a lookahead of about 20 frames): a
frame with two comparable faces (the second at least half the area of the first) belongs to no
track: whose face speaks is unknown there, so it is marked ``multiple_faces`` and never
attributed to one of them. A frame between two looks whose next look sees two comparable faces
(a second face entered between the looks) is flagged ``second_face`` and never used either; a
shot that ends on a frame that was not looked at gets one more look there for that purpose
(:func:`track_frames`). Every tracked frame is cropped to a fixed square around its smoothed box
(:func:`crop`) for the backend, which checks every crop again (a crop without a face is not used).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

import cv2
import numpy as np

from voxmesh.pipelines.ingest.frames import DecodedImage, I420Frame, rgb
from voxmesh.pipelines.ingest.tracking import OnlineTracker, TrackedFrame, TrackRules, area
from voxmesh.schemas import Reason


class ShotCutDetector:
    """Streaming hard-cut detector: frame t starts a new shot when its 32x32 grey thumbnail
    differs from frame t-1's by more than ``cut_threshold`` and by ``cut_ratio`` times the median
    change of the last 25 frames."""

    def __init__(self, track_rules: TrackRules):
        self.track_rules = track_rules
        self.previous: np.ndarray | None = None
        self.recent: list[float] = []

    def is_cut(self, frame: DecodedImage) -> bool:
        thumbnail = grey_thumbnail(frame)
        cut = False
        if self.previous is not None:
            change = float(np.abs(thumbnail - self.previous).mean())
            baseline = float(np.median(self.recent)) if self.recent else 0.0
            cut = change > self.track_rules.cut_threshold and change > self.track_rules.cut_ratio * baseline
            self.recent = [] if cut else (self.recent + [change])[-25:]
        self.previous = thumbnail
        return cut


def grey_thumbnail(frame: DecodedImage) -> np.ndarray:
    """The frame's 32x32 grey thumbnail (float32, 0-255). An :class:`I420Frame`'s comes from its
    luma, scaled as its RGB's grey would be (BT.601 grey is 255 / 219 (Y - 16), before clipping)."""
    step = max(1, min(frame.shape[:2]) // 128)  # subsample first: an area resize of a full frame costs more
    if isinstance(frame, I420Frame):
        return np.clip((_thumbnail(frame.luma[::step, ::step]) - 16) * (255 / 219), 0, 255)
    return _thumbnail(cv2.cvtColor(np.ascontiguousarray(frame[::step, ::step]), cv2.COLOR_RGB2GRAY))


def _thumbnail(grey: np.ndarray) -> np.ndarray:
    return cv2.resize(np.ascontiguousarray(grey), (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)


def blazeface(short_range: bool, min_confidence: float = 0.5) -> Any:
    """MediaPipe's BlazeFace solution with its short-range or full-range model, as the looks make it
    (before :class:`FaceDetector` moves its graph onto the calling thread)."""
    import mediapipe as mp
    return mp.solutions.face_detection.FaceDetection(model_selection=0 if short_range else 1,
                                                     min_detection_confidence=min_confidence)


class FaceDetector:
    """MediaPipe BlazeFace (both models from the wheel). The full-range model finds faces from
    close-ups to small faces in wide shots; the short-range one costs about a third as much per
    look but misses faces under about an eighth of the frame's long side, and its boxes are
    5-10% smaller than the full-range model's on the same large face (so one run of a track takes
    its boxes from one model: :class:`FaceLooks`). Boxes are (x0, y0, x1, y1) in pixels."""

    def __init__(self, min_confidence: float = 0.5):
        from voxmesh.recon.mediapipe_graph import on_calling_thread
        self._models = {short_range: on_calling_thread(blazeface(short_range, min_confidence))
                        for short_range in (False, True)}

    def detect(self, frame: np.ndarray, short_range: bool = False) -> np.ndarray:
        from mediapipe.framework.formats.detection_pb2 import Detection

        from voxmesh.recon.mediapipe_graph import output_packet, serialized_protos
        height, width = frame.shape[:2]
        boxes = []
        for wire in serialized_protos(output_packet(self._models[short_range], frame, "detections")):
            box = Detection.FromString(wire).location_data.relative_bounding_box
            boxes.append((box.xmin * width, box.ymin * height, (box.xmin + box.width) * width,
                          (box.ymin + box.height) * height))
        return np.array(boxes, dtype=np.float64).reshape(-1, 4)

    def close(self) -> None:
        for model in self._models.values():
            model.close()


def largest_face(boxes: np.ndarray, frame: np.ndarray) -> float:
    """The largest box's longer side over the frame's longer side (0 without a box)."""
    return float(np.max(boxes[:, 2:] - boxes[:, :2])) / max(frame.shape[:2]) if len(boxes) else 0.0


# A short-range shot keeps its model while its largest face stays this much of short_range_face
# (the short-range boxes run 5-10% smaller than the full-range box that opened the shot).
SHORT_RANGE_STAYS = 0.8


class FaceLooks:
    """Per frame of one video, in order: whether it starts a new shot, and the detected boxes when
    it is looked at (every ``detect_every``-th frame of a shot, counted from the shot's first
    frame; None otherwise).

    Which model looks: the first look of a shot uses the full-range model. When its largest face
    is at least ``short_range_face`` of the frame's long side and the short-range model sees it
    too, that look and the shot's next ones take the short-range model's boxes, for as long as the
    largest face they see stays at least ``SHORT_RANGE_STAYS`` of that size; a look that sees less
    (the face left, shrank, or a wide shot came without a cut) is redone with the full-range
    model, which the rest of the shot keeps. Why this gives nothing up: a comparable second face
    (half the area) of a face that large is at least 0.7 x 0.8 x 0.3 = 0.17 of the long side,
    well inside the short-range model's reach (about 0.12).
    """

    def __init__(self, detector: FaceDetector, track_rules: TrackRules):
        self.detector, self.track_rules = detector, track_rules
        self.cut_detector = ShotCutDetector(track_rules)
        self.t = self.shot_start = 0
        self.short_range = False

    def observe(self, frame: DecodedImage) -> tuple[bool, np.ndarray | None]:
        t, self.t = self.t, self.t + 1
        cut = self.cut_detector.is_cut(frame)
        if cut:
            self.shot_start = t
        looked_at = (t - self.shot_start) % self.track_rules.detect_every == 0
        return cut, self.look(rgb(frame), shot_start=t == self.shot_start) if looked_at else None

    def look(self, frame: np.ndarray, shot_start: bool) -> np.ndarray:
        large = self.track_rules.short_range_face
        if shot_start:
            self.short_range = False
        if self.short_range:
            boxes = self.detector.detect(frame, short_range=True)
            if largest_face(boxes, frame) >= SHORT_RANGE_STAYS * large:
                return boxes
            self.short_range = False
        boxes = self.detector.detect(frame)
        if shot_start and large > 0 and largest_face(boxes, frame) >= large:
            short = self.detector.detect(frame, short_range=True)
            if largest_face(short, frame) >= SHORT_RANGE_STAYS * large:
                self.short_range = True
                return short
        return boxes


@dataclasses.dataclass
class FacePass:
    """What the looks saw over a whole video: per frame the detected boxes (None on a frame that
    was not looked at), and the frames that start a new shot."""

    boxes: list[np.ndarray | None]
    cuts: set[int]

    @classmethod
    def run(cls, chunks, detector: FaceDetector, track_rules: TrackRules) -> FacePass:
        looks = FaceLooks(detector, track_rules)
        boxes: list[np.ndarray | None] = []
        cuts: set[int] = set()
        for chunk in chunks:
            for frame in chunk:
                cut, found = looks.observe(frame)
                if cut:
                    cuts.add(len(boxes))
                boxes.append(found)
        return cls(boxes, cuts)


@dataclasses.dataclass
class Track:
    """A continuous run of one dominant face: frames ``start..end-1`` and their smoothed boxes."""

    index: int
    start: int
    end: int
    boxes: np.ndarray  # (end - start, 4)

    def box(self, frame: int) -> np.ndarray:
        return self.boxes[frame - self.start]


def frame_status(boxes: np.ndarray, track_rules: TrackRules) -> tuple[Reason | None, np.ndarray | None]:
    """The one face a frame is about, or why there is none."""
    if len(boxes) == 0:
        return Reason.NO_FACE, None
    areas = np.array([area(b) for b in boxes])
    order = np.argsort(-areas)
    if len(boxes) > 1 and areas[order[1]] >= track_rules.comparable_area * areas[order[0]]:
        return Reason.MULTIPLE_FACES, None
    box = boxes[order[0]]
    if box[3] - box[1] < track_rules.min_face_pixels:
        return Reason.FACE_TOO_SMALL, None
    return None, box


def split_run(start: int, end: int, max_frames: int) -> list[tuple[int, int]]:
    """A run of frames ``start..end-1`` cut into the fewest equal parts of at most ``max_frames``."""
    parts = -(-(end - start) // max_frames)
    bounds = [start + (end - start) * k // parts for k in range(parts + 1)]
    return list(zip(bounds, bounds[1:]))


def build_tracks(seen: FacePass, track_rules: TrackRules) -> tuple[list[Track], list[Reason | None]]:
    """Tracks of the dominant face over a whole video's looks (:class:`OnlineTracker`, fed every
    frame) and, per frame, the reason it is in no track (None if it is); runs longer than
    ``max_track_frames`` are cut into equal parts."""
    tracker = OnlineTracker(track_rules)
    decided = [d for t, boxes in enumerate(seen.boxes)
               for d in tracker.push(t in seen.cuts, None if boxes is None else frame_status(boxes, track_rules))]
    decided += tracker.finish()
    tracks: list[Track] = []
    run: list[np.ndarray] = []  # the boxes of the current run
    first = 0
    for frame in decided:
        if frame.box is not None:
            first = frame.t if not run else first
            run.append(frame.box)
        if frame.ends_run:
            for low, high in split_run(first, first + len(run), track_rules.max_track_frames):
                tracks.append(Track(len(tracks), low, high, np.stack(run[low - first:high - first])))
            run = []
    return tracks, [frame.status for frame in decided]


def track_frames(images: Iterable[DecodedImage], detector: FaceDetector,
                 track_rules: TrackRules) -> Iterator[TrackedFrame]:
    """One pass over a video's frames: looks, tracks (:class:`OnlineTracker`) and, where a shot
    ends on a frame that was not looked at (before a cut, at the end), one more look at that
    frame (full range), so that a second face entering after a shot's last look is still seen. Frames come
    out in order, each with its image, holding at most the lookahead's frames."""
    looks = FaceLooks(detector, track_rules)
    tracker = OnlineTracker(track_rules)
    unlooked: DecodedImage | None = None  # the previous frame, if it was not looked at
    for image in images:
        cut, boxes = looks.observe(image)
        if cut and unlooked is not None:
            tracker.look_back(frame_status(detector.detect(rgb(unlooked)), track_rules)[0])
        yield from tracker.push(cut, None if boxes is None else frame_status(boxes, track_rules), image)
        unlooked = image if boxes is None else None
    if unlooked is not None:
        tracker.look_back(frame_status(detector.detect(rgb(unlooked)), track_rules)[0])
    yield from tracker.finish()


def crop(frame: DecodedImage, box: np.ndarray,
         track_rules: TrackRules) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The square crop (``crop_size`` x ``crop_size`` RGB) around ``box`` and its transform
    ``(k, x0, y0)``: crop pixel (u, v) is source pixel ``(k u + x0, k v + y0)``; outside the frame
    is black.

    The crop's window, ``crop_scale`` times the box's longer side, is centred on the box and
    snapped to even source pixels, so that the crop is a plain bilinear resize of it (a third to
    a half of the cost of the same crop by ``warpAffine``) and, from an :class:`I420Frame`, of its
    chroma planes' half-size window: only the crop's own pixels are converted to RGB."""
    size = track_rules.crop_size
    side = 2 * max(1, int(round(track_rules.crop_scale * max(box[2] - box[0], box[3] - box[1]) / 2)))
    x, y = 2 * int(round((box[0] + box[2] - side) / 4)), 2 * int(round((box[1] + box[3] - side) / 4))
    if isinstance(frame, I420Frame) and size % 2 == 0:
        image = _i420_crop(frame, x, y, side, size)
    else:
        image = cv2.resize(_window(rgb(frame), x, y, side), (size, size), interpolation=cv2.INTER_LINEAR)
    k = side / size
    # resize samples crop pixel u at window coordinate (u + 0.5) k - 0.5
    return image, (k, x + (k - 1) / 2, y + (k - 1) / 2)


def _i420_crop(frame: I420Frame, x: int, y: int, side: int, size: int) -> np.ndarray:
    """The RGB crop of ``frame``'s window (even ``x``, ``y``, ``side``): its luma window resized to
    ``size`` and its chroma windows to ``size / 2`` (chroma sample (i, j) stands for luma 2i..2i+1,
    2j..2j+1 at either size), then converted. Outside the frame is limited-range black."""
    planes = np.empty(size * size * 3 // 2, dtype=np.uint8)
    luma, quarter = size * size, size * size // 4
    cv2.resize(_window(frame.luma, x, y, side, fill=16), (size, size),
               dst=planes[:luma].reshape(size, size), interpolation=cv2.INTER_LINEAR)
    for index, chroma in enumerate(frame.chroma):
        start = luma + index * quarter
        cv2.resize(_window(chroma, x // 2, y // 2, side // 2, fill=128), (size // 2, size // 2),
                   dst=planes[start:start + quarter].reshape(size // 2, size // 2), interpolation=cv2.INTER_LINEAR)
    return cv2.cvtColor(planes.reshape(size * 3 // 2, size), cv2.COLOR_YUV2RGB_I420)


def _window(frame: np.ndarray, x: int, y: int, side: int, fill: int = 0) -> np.ndarray:
    """``frame``'s square of ``side`` pixels from (x, y), ``fill`` where it leaves the frame."""
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + side, width), min(y + side, height)
    if (x0, y0, x1, y1) == (x, y, x + side, y + side):
        return frame[y:y1, x:x1]
    window = np.full((side, side) + frame.shape[2:], fill, dtype=frame.dtype)
    if x1 > x0 and y1 > y0:
        window[y0 - y:y1 - y, x0 - x:x1 - x] = frame[y0:y1, x0:x1]
    return window
