"""Faces before reconstruction: shot cuts, face detection, tracks of the dominant face, crops.

Pass 1 over a video (:class:`FacePass`) looks for shot cuts on every 25 fps frame (a content
change of a 32x32 grey thumbnail) and detects faces (MediaPipe's bundled full-range BlazeFace) on
every ``detect_every``-th frame of a shot, counted from the shot's first frame. Tracks are then
built offline from those detections (:func:`build_tracks`): the dominant face is followed by box
overlap, with a gap allowance for missed detections; a shot cut, a jump of the box, or a longer
gap ends a track, and a track runs on to the frame before the next look. Boxes are interpolated
between detections and smoothed. A frame with two comparable faces (the second at least half the
area of the first) belongs to no track: whose face speaks is unknown there, so it is marked
``multiple_faces`` and never attributed to one of them. Pass 2 crops every tracked frame to a
fixed square around its smoothed box (:func:`crop`), and the reconstruction checks every one of
those frames again (a crop without exactly one face is not used), so a face that leaves or a
second face that enters between two looks is still caught.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from voxmesh.schemas import Reason
from voxmesh.schemas.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class TrackRules:
    comparable_area: float = 0.5   # a second face this large (relative area) makes a frame ambiguous
    detect_every: int = 5          # face detection on every n-th frame of a shot (the detector is the costliest step)
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


class ShotCutDetector:
    """Streaming hard-cut detector: frame t starts a new shot when its 32x32 grey thumbnail
    differs from frame t-1's by more than ``cut_threshold`` and by ``cut_ratio`` times the median
    change of the last 25 frames."""

    def __init__(self, track_rules: TrackRules):
        self.track_rules = track_rules
        self.previous: np.ndarray | None = None
        self.recent: list[float] = []

    def is_cut(self, frame: np.ndarray) -> bool:
        step = max(1, min(frame.shape[:2]) // 128)  # subsample first: an area resize of a full frame costs more
        small = cv2.cvtColor(np.ascontiguousarray(frame[::step, ::step]), cv2.COLOR_RGB2GRAY)
        thumbnail = cv2.resize(small, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
        cut = False
        if self.previous is not None:
            change = float(np.abs(thumbnail - self.previous).mean())
            baseline = float(np.median(self.recent)) if self.recent else 0.0
            cut = change > self.track_rules.cut_threshold and change > self.track_rules.cut_ratio * baseline
            self.recent = [] if cut else (self.recent + [change])[-25:]
        self.previous = thumbnail
        return cut


class FaceDetector:
    """MediaPipe BlazeFace, full-range model (from the wheel): it finds faces from close-ups to
    small faces in wide shots, and one model keeps box sizes consistent from frame to frame (the
    short-range model misses faces under ~20% of the frame, and mixing the two makes boxes jump).
    Boxes are (x0, y0, x1, y1) in pixels."""

    def __init__(self, min_confidence: float = 0.5):
        import mediapipe as mp
        self._detector = mp.solutions.face_detection.FaceDetection(model_selection=1,
                                                                  min_detection_confidence=min_confidence)

    def detect(self, frame: np.ndarray) -> np.ndarray:
        height, width = frame.shape[:2]
        result = self._detector.process(frame)
        boxes = []
        for detection in result.detections or []:
            box = detection.location_data.relative_bounding_box
            boxes.append((box.xmin * width, box.ymin * height, (box.xmin + box.width) * width,
                          (box.ymin + box.height) * height))
        return np.array(boxes, dtype=np.float64).reshape(-1, 4)

    def close(self) -> None:
        self._detector.close()


@dataclasses.dataclass
class FacePass:
    """What pass 1 saw: per frame the detected boxes (None on a frame that was not looked at),
    and the frames that start a new shot."""

    boxes: list[np.ndarray | None]
    cuts: set[int]

    @classmethod
    def run(cls, chunks, detector: FaceDetector, track_rules: TrackRules) -> FacePass:
        cut_detector = ShotCutDetector(track_rules)
        boxes: list[np.ndarray | None] = []
        cuts: set[int] = set()
        shot_start = 0
        for chunk in chunks:
            for frame in chunk:
                t = len(boxes)
                if cut_detector.is_cut(frame):
                    cuts.add(t)
                    shot_start = t
                looked_at = (t - shot_start) % track_rules.detect_every == 0
                boxes.append(detector.detect(frame) if looked_at else None)
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


def _area(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], 0) * max(box[3] - box[1], 0))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inner = np.concatenate([np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])])
    intersection = _area(inner)
    union = _area(a) + _area(b) - intersection
    return intersection / union if union > 0 else 0.0


def frame_status(boxes: np.ndarray, track_rules: TrackRules) -> tuple[Reason | None, np.ndarray | None]:
    """The one face a frame is about, or why there is none."""
    if len(boxes) == 0:
        return Reason.NO_FACE, None
    areas = np.array([_area(b) for b in boxes])
    order = np.argsort(-areas)
    if len(boxes) > 1 and areas[order[1]] >= track_rules.comparable_area * areas[order[0]]:
        return Reason.MULTIPLE_FACES, None
    box = boxes[order[0]]
    if box[3] - box[1] < track_rules.min_face_pixels:
        return Reason.FACE_TOO_SMALL, None
    return None, box


def build_tracks(seen: FacePass, track_rules: TrackRules) -> tuple[list[Track], list[Reason | None]]:
    """Tracks of the dominant face and, per frame, the reason it is in no track (None if it is).
    A frame that was not looked at has the status of the last frame that was."""
    statuses: list[Reason | None] = []
    observations: list[np.ndarray | None] = []
    for boxes in seen.boxes:
        if boxes is None:
            statuses.append(statuses[-1] if statuses else Reason.NO_FACE)
            observations.append(None)
        else:
            status, box = frame_status(boxes, track_rules)
            statuses.append(status)
            observations.append(box)
    runs: list[list[tuple[int, np.ndarray]]] = []
    for t, box in enumerate(observations):
        if t in seen.cuts and runs and runs[-1]:
            runs.append([])  # a cut ends the track even without a gap
        if box is None:
            if seen.boxes[t] is not None and statuses[t] is not Reason.NO_FACE and runs and runs[-1]:
                runs.append([])  # ambiguous or too small: never bridged
            continue
        if runs and runs[-1]:
            last_t, last_box = runs[-1][-1]
            if t - last_t - 1 <= track_rules.max_gap and _iou(box, last_box) >= track_rules.min_iou:
                runs[-1].append((t, box))
                continue
        runs.append([(t, box)])
    tracks = []
    for run in (r for r in runs if r):
        frames = np.array([t for t, _ in run])
        boxes = np.stack([b for _, b in run])
        start, end = int(frames[0]), _end_before_next_look(seen, int(frames[-1]))
        filled = np.stack([np.interp(np.arange(start, end), frames, boxes[:, k]) for k in range(4)], axis=1)
        smoothed = _smooth(filled, track_rules.smooth_frames)
        parts = -(-(end - start) // track_rules.max_track_frames)
        bounds = [start + (end - start) * k // parts for k in range(parts + 1)]
        for low, high in zip(bounds, bounds[1:]):
            tracks.append(Track(len(tracks), low, high, smoothed[low - start:high - start]))
        for t in range(start, end):
            statuses[t] = None  # bridged gaps included
    return tracks, statuses


def _end_before_next_look(seen: FacePass, last: int) -> int:
    """The end (exclusive) of a track last seen at frame ``last``: it holds through the frames
    after it that were not looked at, up to the next look or shot cut."""
    end = last + 1
    while end < len(seen.boxes) and seen.boxes[end] is None and end not in seen.cuts:
        end += 1
    return end


def _smooth(boxes: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average of box centre and size (the window shrinks at the ends)."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    size = boxes[:, 2:] - boxes[:, :2]
    half = window // 2
    smoothed = []
    for values in (centre, size):
        cumulative = np.vstack([np.zeros((1, 2)), np.cumsum(values, axis=0)])
        low = np.clip(np.arange(len(values)) - half, 0, len(values))
        high = np.clip(np.arange(len(values)) + half + 1, 0, len(values))
        smoothed.append((cumulative[high] - cumulative[low]) / (high - low)[:, None])
    centre, size = smoothed
    return np.concatenate([centre - size / 2, centre + size / 2], axis=1)


def crop_transform(box: np.ndarray, track_rules: TrackRules) -> tuple[float, float, float]:
    """``(k, x0, y0)`` of the crop around ``box``: crop pixel (u, v) is source pixel
    ``(k u + x0, k v + y0)``."""
    side = track_rules.crop_scale * max(box[2] - box[0], box[3] - box[1])
    k = side / track_rules.crop_size
    centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return k, centre_x - side / 2, centre_y - side / 2


def crop(frame: np.ndarray, transform: tuple[float, float, float], size: int) -> np.ndarray:
    """The square crop (size x size RGB) of ``frame`` under ``transform``; outside is black."""
    k, x0, y0 = transform
    matrix = np.array([[1 / k, 0, -x0 / k], [0, 1 / k, -y0 / k]], dtype=np.float64)
    return cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_AREA if k > 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
