"""Head pose: a similarity fit of stable vertices to the topology's template, and its removal."""

from __future__ import annotations

import numpy as np


def umeyama(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity ``target ≈ scale * R @ source + t`` (Umeyama, IEEE TPAMI 1991).

    ``source`` and ``target`` are (N, 3). Returns ``(scale, R, t)`` with ``R`` a proper rotation
    (det +1). The closed form: with centred points and ``Σ = Yᶜᵀ Xᶜ / N = U D Vᵀ``,
    ``R = U S Vᵀ`` where ``S = diag(1, 1, det(U)det(V))``, ``scale = tr(D S) / σ²ₓ``,
    ``t = μ_y - scale R μ_x``.
    """
    mu_x, mu_y = source.mean(axis=0), target.mean(axis=0)
    xc, yc = source - mu_x, target - mu_y
    covariance = yc.T @ xc / len(source)
    u, d, vt = np.linalg.svd(covariance)
    s = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        s[2, 2] = -1.0
    rotation = u @ s @ vt
    variance_x = (xc ** 2).sum() / len(source)
    scale = float(np.trace(np.diag(d) @ s) / variance_x)
    translation = mu_y - scale * rotation @ mu_x
    return scale, rotation, translation


def similarity_matrix(scale: float, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = scale * rotation
    matrix[:3, 3] = translation
    return matrix


def remove_pose(vertices: np.ndarray, template: np.ndarray, stable_idx: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame, fit ``template[stable_idx]`` to ``vertices[t, stable_idx]`` and undo the fit.

    ``vertices`` is (T, V, 3) in the backend's observation frame. Returns ``(canonical, pose,
    residual)``: the vertices mapped into the template's head frame (T, V, 3), the head-to-
    observation similarity per frame (T, 4, 4), and the RMS distance of the stable vertices to the
    template after the fit, in template units (T,).
    """
    n_frames = vertices.shape[0]
    canonical = np.empty_like(vertices, dtype=np.float64)
    pose = np.empty((n_frames, 4, 4))
    residual = np.empty(n_frames)
    reference = template[stable_idx].astype(np.float64)
    for t in range(n_frames):
        observed = vertices[t].astype(np.float64)
        scale, rotation, translation = umeyama(reference, observed[stable_idx])
        canonical[t] = (observed - translation) @ rotation / scale
        pose[t] = similarity_matrix(scale, rotation, translation)
        residual[t] = np.sqrt(((canonical[t, stable_idx] - reference) ** 2).sum(axis=1).mean())
    return canonical, pose, residual
