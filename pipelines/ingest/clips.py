"""Cutting a reconstructed track into clips, and naming why a track gave none."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np

from voxmesh.schemas import Reason
from voxmesh.schemas.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ClipRules:
    """What makes a frame usable and a run of usable frames a clip."""

    min_seconds: float = 2.0
    max_seconds: float = 20.0
    min_confidence: float = 0.5
    max_av_offset: int = 5  # frames; clips confidently beyond it are flagged (meta av_offset_ok = false)
    drop_av_offset: bool = False  # ... or dropped

    def __post_init__(self):
        if not 0 < self.min_seconds <= self.max_seconds:
            raise ConfigError(f"--min-clip-seconds {self.min_seconds} / --max-clip-seconds {self.max_seconds}: "
                              f"expected 0 < min <= max")
        if not 0 <= self.min_confidence <= 1:
            raise ConfigError(f"--min-confidence must be between 0 and 1 (got {self.min_confidence})")
        if self.max_av_offset < 0:
            raise ConfigError(f"--max-av-offset must be 0 or more frames (got {self.max_av_offset})")


def frame_problems(n_faces: np.ndarray, valid: np.ndarray, confidence: np.ndarray,
                   has_audio: np.ndarray, clip_rules: ClipRules) -> list[Reason | None]:
    """Per reconstructed frame, None when usable, else the first reason it is not."""
    problems: list[Reason | None] = []
    for t in range(len(n_faces)):
        if n_faces[t] == 0:
            problems.append(Reason.NO_FACE)
        elif n_faces[t] > 1:
            problems.append(Reason.MULTIPLE_FACES)
        elif not valid[t] or confidence[t] < clip_rules.min_confidence:
            problems.append(Reason.LOW_CONFIDENCE)
        elif not has_audio[t]:
            problems.append(Reason.AV_LENGTH_MISMATCH)
        else:
            problems.append(None)
    return problems


def segment(usable: np.ndarray, min_frames: int, max_frames: int) -> list[tuple[int, int]]:
    """Clips ``[start, end)`` over runs of usable frames: runs shorter than ``min_frames`` are
    dropped, longer runs than ``max_frames`` are cut into the fewest equal parts that fit."""
    clips = []
    t, n = 0, len(usable)
    while t < n:
        if not usable[t]:
            t += 1
            continue
        start = t
        while t < n and usable[t]:
            t += 1
        length = t - start
        if length < min_frames:
            continue
        parts = -(-length // max_frames)
        bounds = [start + (length * k) // parts for k in range(parts + 1)]
        clips += [(bounds[k], bounds[k + 1]) for k in range(parts)]
    return clips


def reason_for_no_clip(problems: list[Reason | None]) -> Reason:
    """Why a track yielded no clip: too short if some frames were usable, else the commonest
    problem among its frames."""
    reasons = Counter(p for p in problems if p is not None)
    if sum(reasons.values()) < len(problems) or not problems:
        return Reason.TOO_SHORT
    return reasons.most_common(1)[0][0]
