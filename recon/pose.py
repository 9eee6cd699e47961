"""Head pose: a similarity fit of stable vertices to the topology's template, and its removal."""

from __future__ import annotations

import numpy as np


def umeyama(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity ``target ≈ scale * R @ source + t`` (Umeyama, IEEE TPAMI 1991).

    ``source`` and ``target`` are (N, 3). Returns ``(scale, R, t)`` with ``R`` a proper rotation
    (det +1); :func:`umeyama_batch` for the closed form."""
    scale, rotation, translation = umeyama_batch(source, target[None])
    return float(scale[0]), rotation[0], translation[0]


def umeyama_batch(source: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`umeyama` for T targets (T, N, 3) at once: scales (T,), rotations (T, 3, 3) and
    translations (T, 3). The closed form: with centred points and ``Σ = Yᶜᵀ Xᶜ / N = U D Vᵀ``,
    ``R = U S Vᵀ`` where ``S = diag(1, 1, det(U)det(V))``, ``scale = tr(D S) / σ²ₓ``,
    ``t = μ_y - scale R μ_x``.
    """
    mu_x, mu_y = source.mean(axis=0), targets.mean(axis=1)
    xc, yc = source - mu_x, targets - mu_y[:, None]
    covariance = np.swapaxes(yc, 1, 2) @ xc / len(source)
    u, d, vt = np.linalg.svd(covariance)
    s = np.ones_like(d)
    s[np.linalg.det(u) * np.linalg.det(vt) < 0, 2] = -1.0
    rotation = (u * s[:, None, :]) @ vt
    variance_x = (xc ** 2).sum() / len(source)
    scale = (d * s).sum(axis=1) / variance_x
    return scale, rotation, mu_y - scale[:, None] * (rotation @ mu_x)


def remove_pose(vertices: np.ndarray, template: np.ndarray, stable_idx: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame, fit ``template[stable_idx]`` to ``vertices[t, stable_idx]`` and undo the fit
    (all frames in one batch).

    ``vertices`` is (T, V, 3) in the backend's observation frame. Returns ``(canonical, pose,
    residual)``: the vertices mapped into the template's head frame (T, V, 3), the head-to-
    observation similarity per frame (T, 4, 4), and the RMS distance of the stable vertices to the
    template after the fit, in template units (T,).
    """
    observed = vertices.astype(np.float64)
    reference = template[stable_idx].astype(np.float64)
    scale, rotation, translation = umeyama_batch(reference, observed[:, stable_idx])
    canonical = (observed - translation[:, None]) @ rotation / scale[:, None, None]
    pose = np.zeros((len(observed), 4, 4))
    pose[:, :3, :3] = scale[:, None, None] * rotation
    pose[:, :3, 3] = translation
    pose[:, 3, 3] = 1.0
    residual = np.sqrt(((canonical[:, stable_idx] - reference) ** 2).sum(axis=2).mean(axis=1))
    return canonical, pose, residual
