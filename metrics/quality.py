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
