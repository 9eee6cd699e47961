"""The conformance suite every reconstruction backend must pass.

    from voxmesh.recon.testing import check_backend
    check_backend(MyBackend(), frames)   # frames: (N, H, W, 3) uint8 crops of one face

It checks, with the checks the build applies to every batch and track
(:func:`~voxmesh.recon.base.check_structure`, :func:`~voxmesh.recon.base.check_values`): shapes
and dtypes against the backend's topology (the per-track neutral face included, set by
``finish_track`` only) and finite output where frames are valid. It also checks a version
readable before set-up, determinism for a fixed input, topology indices in range, and that
reconstructing the frames in one batch equals reconstructing them one by one. It raises
``AssertionError`` naming what failed.
"""

from __future__ import annotations

import numpy as np

from .base import BackendContractError, Reconstruction, ReconstructionBackend, check_output


def _conforms(backend: ReconstructionBackend, result: Reconstruction, n_frames: int, finished: bool = False) -> None:
    try:
        check_output(backend, result, n_frames, finished)
    except (BackendContractError, ValueError) as error:
        raise AssertionError(str(error)) from None


def _run(backend: ReconstructionBackend, frames: np.ndarray, batch: int) -> Reconstruction:
    backend.reset()
    parts = []
    for start in range(0, len(frames), batch):
        parts.append(backend.reconstruct(frames[start:start + batch]))
        _conforms(backend, parts[-1], len(frames[start:start + batch]))
    result = backend.finish_track(Reconstruction.concatenate(parts))
    _conforms(backend, result, len(frames), finished=True)
    return result


def _same(a: np.ndarray | None, b: np.ndarray | None, atol: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and np.allclose(a, b, atol=atol, equal_nan=True)


def check_backend(backend: ReconstructionBackend, frames: np.ndarray, atol: float = 1e-5) -> Reconstruction:
    """Run the suite on ``frames`` (a few frames of one face); return the batch result."""
    name = backend.name
    assert isinstance(backend.version, str) and backend.version, f"{name}: version must be a non-empty string"
    backend.setup()
    try:
        topology = backend.topology
        topology.check()
        result = _run(backend, frames, len(frames))
        assert result.valid.any(), f"{name}: no valid frame on a clear face"
        again = _run(backend, frames, len(frames))
        one_by_one = _run(backend, frames, 1)
        for field in ("mesh", "pose", "lmk2d", "confidence", "n_faces", "coeffs", "identity", "neutral"):
            assert _same(getattr(result, field), getattr(again, field), 0.0), f"{name}: {field} differs between two runs"
            assert _same(getattr(result, field), getattr(one_by_one, field), atol), \
                f"{name}: {field} differs between one batch and frame by frame"
        return result
    finally:
        backend.close()
