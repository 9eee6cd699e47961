"""Motion metrics for speech-driven 3D facial animation, over (T, V, 3) vertex sequences.

Inputs may be NumPy arrays or torch tensors (converted to NumPy; these are evaluation metrics,
not losses). Where a metric takes "sequences", it takes one (T, V, 3) array or a list of them
(different lengths allowed), the way a test set is a list of sentences. Vertex index sets (lips,
upper face) come from the topology registry (``voxmesh.schemas.get_topology``); the README lists
them per topology.

Two lip vertex error conventions exist and are both here, named:

- ``squared=True``, **CodeTalker's code** (``main/cal_metric.py``, Xing et al., CVPR 2023): per
  frame the maximum over lip vertices of the *squared* L2 distance, then the mean over all frames
  of all test sequences pooled together (a long sequence weighs more than a short one). CodeTalker's
  Table 1 (which also lists FaceFormer and MeshTalk) comes from this code. voxmesh's tables use it.
- ``squared=False``, **the MeshTalk / FaceFormer text** (Richard et al., ICCV 2021; Fan et al.,
  CVPR 2022): the maximal L2 distance over the lip vertices per frame, averaged over frames (pooled
  the same way).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def as_numpy(array) -> np.ndarray:
    """A float64 NumPy view of a NumPy array or a torch tensor (on any device)."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array, dtype=np.float64)


def _sequences(x) -> list[np.ndarray]:
    """One (T, V, 3) sequence or a list of them -> a list of float64 arrays."""
    if isinstance(x, Sequence) and not isinstance(x, np.ndarray):
        return [as_numpy(s) for s in x]
    return [as_numpy(x)]


def frame_lip_errors(pred, gt, lip_idx, squared: bool = True) -> np.ndarray:
    """Per frame, the largest (squared when ``squared``) L2 distance over the lip vertices:
    (..., T) for (..., T, V, 3) inputs (leading dimensions broadcast)."""
    difference = as_numpy(pred)[..., lip_idx, :] - as_numpy(gt)[..., lip_idx, :]
    squared_distance = (difference ** 2).sum(axis=-1)
    return (squared_distance if squared else np.sqrt(squared_distance)).max(axis=-1)


def lip_vertex_error(pred, gt, lip_idx, squared: bool = True) -> float:
    """Lip vertex error over one sequence or a list of sequences (see the module docstring):
    ``mean over all frames f of all sequences of max_{v in lips} ||pred[f, v] - gt[f, v]||^2``
    (``squared=True``, CodeTalker's code) or of the unsquared maximum (``squared=False``)."""
    errors = [frame_lip_errors(p, g, lip_idx, squared) for p, g in zip(_sequences(pred), _sequences(gt), strict=True)]
    return float(np.concatenate(errors).mean())


def mean_vertex_error(pred, gt) -> float:
    """Mean L2 distance over all frames and vertices of one sequence or a list (frames pooled)."""
    errors = [np.linalg.norm(p - g, axis=-1).ravel() for p, g in zip(_sequences(pred), _sequences(gt), strict=True)]
    return float(np.concatenate(errors).mean())


def upper_face_dynamics_deviation(pred, gt, upper_idx, template) -> float:
    """FDD exactly as CodeTalker's code (``main/cal_metric.py``, Xing et al., CVPR 2023): per
    sequence, for every upper-face vertex v the standard deviation over time (population, ddof 0)
    of its squared displacement from the template ``||x[t, v] - template[v]||^2``, averaged over
    the upper-face vertices, **ground truth minus prediction**; then the mean over sequences.
    Positive when the prediction's upper face moves less than the truth's.

    ``template`` is the face the sequences are displaced from, (V, 3), or a list of one per
    sequence: the same face the prediction was placed on (never the target's own mean, which carries its motion).
    """
    preds, gts = _sequences(pred), _sequences(gt)
    templates = [as_numpy(t) for t in template] if isinstance(template, list) else [as_numpy(template)] * len(gts)
    differences = []
    for p, g, face in zip(preds, gts, templates, strict=True):
        spread = [(((x[:, upper_idx] - face[upper_idx]) ** 2).sum(axis=-1)).std(axis=0).mean() for x in (g, p)]
        differences.append(spread[0] - spread[1])
    return float(np.mean(differences))


def coverage_lip_error(samples, gt, lip_idx, squared: bool = True) -> float:
    """Yang et al. (CVPR 2024) l_cover: per sequence, the lip vertex error of the best of its N
    samples; pooled over the frames of all sequences like :func:`lip_vertex_error`. ``samples``
    is (N, T, V, 3) or a list of them, ``gt`` (T, V, 3) or a list."""
    chosen = []
    for draws, truth in zip(_sequences(samples), _sequences(gt), strict=True):
        errors = frame_lip_errors(draws, truth[None], lip_idx, squared)  # (N, T)
        chosen.append(errors[int(np.argmin(errors.mean(axis=1)))])
    return float(np.concatenate(chosen).mean())


def mean_sample_lip_error(samples, gt, lip_idx, squared: bool = True) -> float:
    """Yang et al. (CVPR 2024) l_mean: the lip vertex error of the mean of each sequence's N
    samples, pooled over frames like :func:`lip_vertex_error`."""
    return lip_vertex_error([s.mean(axis=0) for s in _sequences(samples)], gt, lip_idx, squared)


def diversity(samples) -> float:
    """Mean L2 distance between every pair of the N samples (N, T, V, 3) for the same audio,
    averaged over frames and vertices (for a list of sequences, the mean over sequences); zero when
    the samples are identical."""
    values = []
    for draws in _sequences(samples):
        n = len(draws)
        if n < 2:
            raise ValueError("diversity needs at least two samples")
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        values.append(np.mean([np.linalg.norm(draws[i] - draws[j], axis=-1).mean() for i, j in pairs]))
    return float(np.mean(values))


def frechet_distance(features_a, features_b) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (Heusel et al., NeurIPS 2017):
    ``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``. Each set needs more rows than
    columns for a full-rank covariance (``ValueError`` otherwise)."""
    from scipy import linalg
    a, b = as_numpy(features_a), as_numpy(features_b)
    for features in (a, b):
        if len(features) <= features.shape[1]:
            raise ValueError(f"the Frechet distance of {features.shape[1]}-dimensional features needs more than "
                             f"{features.shape[1]} feature vectors per set, got {len(features)}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root = np.real(linalg.sqrtm(cov_a @ cov_b))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))
