"""Per-clip quality figures written into each sample's meta and the manifest."""

from __future__ import annotations

import numpy as np

from voxmesh.schemas import FPS


def lip_motion(mesh: np.ndarray, lip_idx: np.ndarray, fps: int = FPS) -> float:
    """Mean speed of the lip vertices in the canonical head frame, in mesh units per second:
    ``mean over t and lip vertices of ||v[t+1] - v[t]|| * fps``. Near zero for a face that does
    not speak; a talking face in the ``mediapipe478`` frame moves its lips a few cm/s."""
    if len(mesh) < 2:
        return 0.0
    lips = mesh[:, lip_idx].astype(np.float64)
    return float(np.linalg.norm(np.diff(lips, axis=0), axis=-1).mean() * fps)


def jitter(mesh: np.ndarray, idx: np.ndarray) -> float:
    """High-frequency energy of the tracked vertices ``idx`` (use the upper face, which speech
    barely moves): mean norm of the second difference ``x[t+1] - 2 x[t] + x[t-1]``, mesh units per
    frame squared. Tracking noise raises it; smooth head and brow motion barely does."""
    if len(mesh) < 3:
        return 0.0
    points = mesh[:, idx].astype(np.float64)
    return float(np.linalg.norm(points[2:] - 2 * points[1:-1] + points[:-2], axis=-1).mean())
