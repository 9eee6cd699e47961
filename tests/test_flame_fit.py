"""The landmark-only FLAME fitter recovers known parameters from synthetic landmarks, on the
105-point MediaPipe-layout path and the 68-point iBUG path; the backend picks the embedding from
``$VOXMESH_FLAME_MEDIAPIPE_EMBEDDING`` and names it in its version; the bench runs in short mode."""


import numpy as np
import pytest
import torch
from flame_synthetic import reference_lbs, synthetic_embedding, synthetic_flame, synthetic_track

from voxmesh.recon.base import Reconstruction
from voxmesh.recon.flame import EMBEDDING_ENV, FlameBackend, FlameModel, LandmarkEmbedding, fit_flame
from voxmesh.recon.flame_fit import FitSettings
from voxmesh.recon.ibug68 import MEDIAPIPE_68
from voxmesh.schemas.errors import ConfigError


@pytest.fixture
def model_arrays():
    return synthetic_flame(n_vertices=400, n_shape=10, n_expression=12)


def test_closed_form_skinning_equals_flames_full_blend_skinning(model_arrays, tmp_path):
    np.savez(tmp_path / "flame.npz", **model_arrays)
    model = FlameModel.load(str(tmp_path / "flame.npz"))
    generator = torch.Generator().manual_seed(0)
    shape, expression = torch.randn(model.n_shape, generator=generator), torch.randn(4, model.n_expression, generator=generator)
    jaw = 0.3 * torch.randn(4, 3, generator=generator)
    with torch.no_grad():
        np.testing.assert_allclose(model(shape, expression, jaw).numpy(),
                                   reference_lbs(model, shape, expression, jaw).numpy(), atol=1e-6)
        assert (model(shape, expression, jaw) - model(shape, expression, 0 * jaw)).abs().max() > 1e-3


def test_a_model_with_another_kinematic_tree_is_refused(model_arrays, tmp_path):
    np.savez(tmp_path / "flame.npz", **{**model_arrays, "parents": np.array([-1, 0, 0, 1, 1])})
    with pytest.raises(ConfigError, match="not FLAME's"):
        FlameModel.load(str(tmp_path / "flame.npz"))


def check_recovery(model, targets, truth, fit):
    assert fit.landmark_rmse < 0.01 * targets.std()
    assert np.abs(fit.expression - truth["expression"]).mean() < 0.05 * np.abs(truth["expression"]).mean() + 0.02
    assert np.abs(fit.jaw - truth["jaw"]).mean() < 0.01
    np.testing.assert_allclose(fit.similarity[0][:3, :3], 50 * truth["rotation"], atol=0.5)
    assert fit.vertices.shape == (len(targets), model.v_template.shape[0], 3)


def test_fitter_recovers_parameters_on_the_68_point_path(model_arrays, tmp_path):
    np.savez(tmp_path / "flame.npz", **model_arrays)
    model = FlameModel.load(str(tmp_path / "flame.npz"))
    assert model.lmk_faces_idx.shape[0] == 68
    targets, truth = synthetic_track(model, 40)
    check_recovery(model, targets, truth, fit_flame(model, targets))


def test_fitter_recovers_parameters_on_the_105_point_path(model_arrays, tmp_path):
    np.savez(tmp_path / "flame.npz", **model_arrays)
    model = FlameModel.load(str(tmp_path / "flame.npz"))
    embedding = synthetic_embedding(model_arrays)
    targets, truth = synthetic_track(model, 40, embedding["lmk_face_idx"], embedding["lmk_b_coords"])
    fit = fit_flame(model, targets, FitSettings(), embedding["lmk_face_idx"], embedding["lmk_b_coords"])
    check_recovery(model, targets, truth, fit)


def test_chunks_start_from_the_previous_chunk(model_arrays, tmp_path):
    np.savez(tmp_path / "flame.npz", **model_arrays)
    model = FlameModel.load(str(tmp_path / "flame.npz"))
    targets, truth = synthetic_track(model, 40)
    whole = fit_flame(model, targets)
    chunked = fit_flame(model, targets, FitSettings(chunk_frames=20))
    assert chunked.landmark_rmse < 0.01 * targets.std()
    assert np.abs(chunked.jaw - whole.jaw).max() < 0.01


def mediapipe_result(targets: np.ndarray, mediapipe_idx: np.ndarray) -> Reconstruction:
    """What the MediaPipe stage gives the fitter for a track whose points ``mediapipe_idx`` are
    ``targets`` (T, L, 3) (the other points are never read by the fit)."""
    n_frames = len(targets)
    mesh = np.zeros((n_frames, 478, 3), dtype=np.float32)
    mesh[:, mediapipe_idx] = targets
    return Reconstruction(mesh=mesh, pose=np.tile(np.eye(4, dtype=np.float32), (n_frames, 1, 1)),
                          lmk2d=np.zeros((n_frames, 478, 2), dtype=np.float32),
                          confidence=np.ones(n_frames, dtype=np.float32), n_faces=np.ones(n_frames, dtype=np.int16))


@pytest.mark.parametrize("chunk_frames", [250, 20])
def test_backend_gives_the_neutral_face_of_the_fitted_shape(model_arrays, tmp_path, chunk_frames):
    """neutral = FLAME (written out here from the model's arrays) with the fitted shape, zero
    expression and jaw; a track fitted in chunks (one shape each) takes their mean over its frames."""
    np.savez(tmp_path / "flame.npz", **model_arrays)
    settings = FitSettings(chunk_frames=chunk_frames)
    backend = FlameBackend(str(tmp_path / "flame.npz"), settings)
    backend.setup()
    try:
        targets, truth = synthetic_track(backend.model, 50)
        track = mediapipe_result(targets.astype(np.float32), MEDIAPIPE_68)
        result = backend.finish_track(track)
        fit = fit_flame(backend.model, track.mesh[:, MEDIAPIPE_68], settings)
    finally:
        backend.close()
    shape = fit.shape if chunk_frames > 50 else fit.identity.astype(np.float64).mean(0)
    if chunk_frames < 50:  # three chunks, three shapes: the mean is not the last one
        assert np.abs(fit.identity[0] - fit.shape).max() > 1e-4
    expected = model_arrays["v_template"] + np.einsum("vcs,s->vc", model_arrays["shapedirs"], shape)
    assert result.neutral.dtype == np.float32 and result.neutral.shape == (400, 3)
    np.testing.assert_allclose(result.neutral, expected, atol=1e-6)
    np.testing.assert_array_equal(result.identity, fit.identity)
    assert np.abs(result.neutral - result.mesh.mean(0)).max() > 1e-3  # the mean face holds the jaw's opening


def test_backend_uses_the_mediapipe_embedding_when_given(model_arrays, tmp_path, monkeypatch):
    np.savez(tmp_path / "flame.npz", **model_arrays)
    np.savez(tmp_path / "mediapipe_landmark_embedding.npz", **synthetic_embedding(model_arrays))
    monkeypatch.setenv(EMBEDDING_ENV, str(tmp_path / "mediapipe_landmark_embedding.npz"))
    backend = FlameBackend(str(tmp_path / "flame.npz"))
    backend.setup()
    try:
        assert backend.embedding.name == "mp105" and "+mp105+" in backend.version
        assert len(backend.embedding.mediapipe_idx) == 105
    finally:
        backend.close()
    monkeypatch.delenv(EMBEDDING_ENV)
    fallback = FlameBackend(str(tmp_path / "flame.npz"))
    fallback.setup()
    try:
        assert fallback.embedding.name == "ibug68" and "+ibug+" in fallback.version
    finally:
        fallback.close()


def test_an_embedding_file_without_the_arrays_is_refused(tmp_path):
    np.savez(tmp_path / "bad.npz", lmk_face_idx=np.zeros(3, dtype=np.int64))
    with pytest.raises(ConfigError, match="mediapipe_landmark_embedding"):
        LandmarkEmbedding.load_mediapipe(str(tmp_path / "bad.npz"))


def test_bench_flame_runs_in_short_mode(run_bench):
    last = run_bench("bench_flame.py", "--short")
    assert last.startswith("flame_fit_fps=") and " device=cpu frames=12" in last
