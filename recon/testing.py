"""The conformance suite every reconstruction backend must pass.

    from voxmesh.recon.testing import check_backend
    check_backend(MyBackend(), frames)   # frames: (N, H, W, 3) uint8 crops of one face

It checks shapes and dtypes against the backend's topology (the per-track neutral face included,
set by ``finish_track`` only), finite output where frames are valid,
determinism for a fixed input, topology indices in range, and that reconstructing the frames in one
batch equals reconstructing them one by one. It raises ``AssertionError`` naming what failed.
"""

from __future__ import annotations

import numpy as np

from .base import Reconstruction, ReconstructionBackend


def _run(backend: ReconstructionBackend, frames: np.ndarray, batch: int) -> Reconstruction:
    backend.reset()
    parts = [backend.reconstruct(frames[i:i + batch]) for i in range(0, len(frames), batch)]
    assert all(p.neutral is None for p in parts), f"{backend.name}: reconstruct set neutral (finish_track's, per track)"
    return backend.finish_track(Reconstruction.concatenate(parts))


def _same(a: np.ndarray | None, b: np.ndarray | None, atol: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and np.allclose(a, b, atol=atol, equal_nan=True)


def check_backend(backend: ReconstructionBackend, frames: np.ndarray, atol: float = 1e-5) -> Reconstruction:
    """Run the suite on ``frames`` (a few frames of one face); return the batch result."""
    name = backend.name
    backend.setup()
    try:
        topology = backend.topology
        topology.check()
        result = _run(backend, frames, len(frames))
        n = len(frames)
        expected = {"mesh": ((n, topology.n_vertices, 3), np.float32), "pose": ((n, 4, 4), np.float32),
                    "lmk2d": ((n, topology.n_landmarks, 2), np.float32), "confidence": ((n,), np.float32)}
        for field, (shape, dtype) in expected.items():
            array = getattr(result, field)
            assert array.shape == shape and array.dtype == dtype, \
                f"{name}: {field} is {array.dtype}{array.shape}, expected {np.dtype(dtype)}{shape}"
        assert result.n_faces.shape == (n,), f"{name}: n_faces has shape {result.n_faces.shape}"
        assert result.coeffs is None or (result.coeffs.ndim == 2 and len(result.coeffs) == n
                                         and result.coeffs.dtype == np.float32), f"{name}: coeffs must be (N, C) float32"
        assert result.neutral is None or (result.neutral.shape == (topology.n_vertices, 3)
                                          and result.neutral.dtype == np.float32
                                          and np.isfinite(result.neutral).all()), f"{name}: neutral must be finite (V, 3) float32"
        valid = result.valid
        assert valid.any(), f"{name}: no valid frame on a clear face"
        for field in ("mesh", "pose", "lmk2d", "confidence"):
            assert np.isfinite(getattr(result, field)[valid]).all(), f"{name}: non-finite {field} on valid frames"
        assert ((result.confidence[valid] >= 0) & (result.confidence[valid] <= 1)).all(), f"{name}: confidence outside [0, 1]"
        again = _run(backend, frames, len(frames))
        one_by_one = _run(backend, frames, 1)
        for field in ("mesh", "pose", "lmk2d", "confidence", "n_faces", "coeffs", "identity", "neutral"):
            assert _same(getattr(result, field), getattr(again, field), 0.0), f"{name}: {field} differs between two runs"
            assert _same(getattr(result, field), getattr(one_by_one, field), atol), \
                f"{name}: {field} differs between one batch and frame by frame"
        return result
    finally:
        backend.close()
