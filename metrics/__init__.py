"""Motion metrics exactly as published (lip vertex error in CodeTalker's code and in the MeshTalk /
FaceFormer text, FDD as CodeTalker's code, l_cover / l_mean / diversity of Yang et al., the
Frechet distance); the evaluation networks (SyncNet-3D, the style recognition network) live in
``voxmesh.metrics.syncnet`` and ``voxmesh.metrics.style``."""

from .motion import (
    coverage_lip_error,
    diversity,
    frame_lip_errors,
    frechet_distance,
    lip_vertex_error,
    mean_sample_lip_error,
    mean_vertex_error,
    upper_face_dynamics_deviation,
)

__all__ = ["coverage_lip_error", "diversity", "frame_lip_errors", "frechet_distance", "lip_vertex_error",
           "mean_sample_lip_error", "mean_vertex_error", "upper_face_dynamics_deviation"]
