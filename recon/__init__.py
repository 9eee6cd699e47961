"""Reconstruction backends behind one interface, their registry, and head-pose removal."""

from .base import Reconstruction, ReconstructionBackend
from .pose import remove_pose, umeyama
from .registry import BackendUnavailable, backend_class, backend_classes, create_backend

__all__ = ["BackendUnavailable", "Reconstruction", "ReconstructionBackend", "backend_class",
           "backend_classes", "create_backend", "remove_pose", "umeyama"]
