"""Motion metrics for speech-driven 3D facial animation, over (..., T, V, 3) vertex arrays.

Inputs may be NumPy arrays or torch tensors (converted to NumPy; these are evaluation metrics,
not losses). Leading dimensions are batch dimensions; results have those dimensions. Vertex
index sets (lips, upper face) come from the topology registry (``voxmesh.schemas.get_topology``).
"""

from __future__ import annotations

import numpy as np


def as_numpy(array) -> np.ndarray:
    """A float64 NumPy view of a NumPy array or a torch tensor (on any device)."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array, dtype=np.float64)


def lip_vertex_error(pred, gt, lip_idx) -> np.ndarray:
    """Lip vertex error (VOCASET / BIWI convention; CodeTalker, CVPR 2023, Table 1): per frame the
    largest L2 distance over the lip vertices, averaged over frames.
    ``LVE = mean_t max_{v in lips} ||pred[t, v] - gt[t, v]||``."""
    pred, gt = as_numpy(pred), as_numpy(gt)
    distances = np.linalg.norm(pred[..., lip_idx, :] - gt[..., lip_idx, :], axis=-1)
    return distances.max(axis=-1).mean(axis=-1)


def mean_vertex_error(pred, gt) -> np.ndarray:
    """Mean L2 distance over all frames and vertices."""
    return np.linalg.norm(as_numpy(pred) - as_numpy(gt), axis=-1).mean(axis=(-1, -2))


def upper_face_dynamics_deviation(pred, gt, upper_idx, template=None) -> np.ndarray:
    """FDD (CodeTalker, CVPR 2023): per upper-face vertex, the standard deviation over time of its
    motion norm ``||x[t, v] - template[v]||``, prediction minus ground truth, averaged over the
    upper-face vertices. ``template`` (V, 3) is the speaker's neutral face; voxmesh data has none,
    so by default the ground truth's temporal mean is used for both. Signed: positive when the
    prediction's upper face moves more than the ground truth's."""
    pred, gt = as_numpy(pred), as_numpy(gt)
    reference = gt.mean(axis=-3, keepdims=True) if template is None else as_numpy(template)
    motion_std = [np.linalg.norm(x[..., upper_idx, :] - reference[..., upper_idx, :], axis=-1).std(axis=-2)
                  for x in (pred, gt)]
    return (motion_std[0] - motion_std[1]).mean(axis=-1)


def coverage_lip_error(samples, gt, lip_idx) -> np.ndarray:
    """Yang et al. (CVPR 2024) l_cover: the lowest lip vertex error among N samples for the same
    audio. ``samples`` is (..., N, T, V, 3), ``gt`` (..., T, V, 3)."""
    samples, gt = as_numpy(samples), as_numpy(gt)
    return lip_vertex_error(samples, gt[..., None, :, :, :], lip_idx).min(axis=-1)


def mean_sample_lip_error(samples, gt, lip_idx) -> np.ndarray:
    """Yang et al. (CVPR 2024) l_mean: the lip vertex error of the mean of N samples."""
    return lip_vertex_error(as_numpy(samples).mean(axis=-4), gt, lip_idx)


def diversity(samples) -> np.ndarray:
    """Mean L2 distance between every pair of the N samples (..., N, T, V, 3) for the same audio,
    averaged over frames and vertices; zero when the samples are identical."""
    samples = as_numpy(samples)
    n = samples.shape[-4]
    if n < 2:
        raise ValueError("diversity needs at least two samples")
    total = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            total = total + mean_vertex_error(samples[..., i, :, :, :], samples[..., j, :, :, :])
    return total / (n * (n - 1) / 2)


def motion_features(mesh, lip_idx, window: int = 25) -> np.ndarray:
    """Features of lip motion for the Frechet distance: per window of ``window`` frames (1 s at
    25 fps, hop half a window), the mean and the standard deviation of each lip vertex's speed and
    of its vertical offset from the window mean. Returns (n_windows, 4 * len(lip_idx))."""
    mesh = as_numpy(mesh)[..., lip_idx, :]
    speed = np.linalg.norm(np.diff(mesh, axis=0), axis=-1)
    features = []
    for start in range(0, len(speed) - window + 1, window // 2):
        vertical = mesh[start:start + window, :, 1]
        vertical = vertical - vertical.mean(axis=0)
        s = speed[start:start + window]
        features.append(np.concatenate([s.mean(0), s.std(0), np.abs(vertical).mean(0), vertical.std(0)]))
    return np.array(features).reshape(-1, 4 * len(lip_idx))


def frechet_distance(features_a, features_b) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (Heusel et al., NeurIPS 2017):
    ``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``."""
    from scipy import linalg
    a, b = as_numpy(features_a), as_numpy(features_b)
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root = np.real(linalg.sqrtm(cov_a @ cov_b))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))
