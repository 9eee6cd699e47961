"""Every registered backend passes the conformance suite (fan3d with weights made in the test);
the FLAME fitter, its model format and the restricted unpickler (FLAME itself cannot be
downloaded: a synthetic FLAME-format model is built here)."""

import json
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch
from flame_synthetic import synthetic_flame
from scipy.spatial.transform import Rotation
from skimage import data

from voxmesh.cli import main
from voxmesh.pipelines.demo import find_mouth, open_mouth
from voxmesh.recon import backend_class, backend_classes
from voxmesh.recon.deca import CHECKPOINT_ENV
from voxmesh.recon.fan3d import WEIGHTS_ENV
from voxmesh.recon.flame import FLAME_HEAD_FRAME, MODEL_ENV, FlameModel, fit_flame
from voxmesh.recon.flame_convert import load_untrusted_pickle
from voxmesh.recon.testing import check_backend


@pytest.fixture
def flame_model_file(tmp_path, monkeypatch):
    path = str(tmp_path / "flame.npz")
    np.savez(path, **synthetic_flame())
    monkeypatch.setenv(MODEL_ENV, path)
    return path


def talking_frames(n: int = 8) -> np.ndarray:
    face = data.astronaut()[0:256, 96:352]
    mouth = find_mouth(face)
    return np.stack([open_mouth(face, mouth, (i % 4) / 3) for i in range(n)])


@pytest.mark.parametrize("name", sorted(backend_classes()))
def test_every_registered_backend_conforms(name, flame_model_file, fan3d_weights, monkeypatch, request):
    monkeypatch.setenv(WEIGHTS_ENV, os.path.dirname(fan3d_weights["fan"]))
    if name == "deca":  # DECA's 100 shape and 50 expression components, its checkpoint's exact keys
        checkpoint, model = request.getfixturevalue("deca_files")
        monkeypatch.setenv(MODEL_ENV, model)
        monkeypatch.setenv(CHECKPOINT_ENV, checkpoint)
    cls = backend_class(name)  # raises with the reason if it cannot run here
    result = check_backend(cls(), talking_frames())
    assert result.valid.all()
    assert (result.neutral is not None) == (name in ("deca", "flame"))  # only parametric backends have one


def test_flame_forward_gives_the_template_at_zero_parameters(flame_model_file):
    model = FlameModel.load(flame_model_file)
    vertices = model(torch.zeros(model.n_shape), torch.zeros(2, model.n_expression), torch.zeros(2, 3))
    np.testing.assert_allclose(vertices[0].numpy(), model.v_template.numpy(), atol=1e-6)
    jaw_open = model(torch.zeros(model.n_shape), torch.zeros(1, model.n_expression), torch.tensor([[0.3, 0, 0]]))
    assert (jaw_open[0] - vertices[0]).abs().max() > 1e-3


def test_flame_fitter_recovers_landmarks_and_expression(flame_model_file):
    model = FlameModel.load(flame_model_file)
    rng = np.random.default_rng(1)
    n_frames = 25
    shape = torch.tensor(rng.standard_normal(model.n_shape), dtype=torch.float32)
    expression = torch.tensor(np.cumsum(0.3 * rng.standard_normal((n_frames, model.n_expression)), axis=0),
                              dtype=torch.float32)
    jaw = torch.tensor(np.stack([np.linspace(0, 0.2, n_frames), np.zeros(n_frames), np.zeros(n_frames)], 1),
                       dtype=torch.float32)
    with torch.no_grad():
        landmarks = model.landmarks(model(shape, expression, jaw)).numpy()
    rotation = Rotation.from_euler("xyz", [10, -20, 5], degrees=True).as_matrix()
    targets = 50 * landmarks @ rotation.T + np.array([1.0, 2.0, -3.0])  # e.g. centimetres, turned, moved
    fit = fit_flame(model, targets)
    assert fit.landmark_rmse < 0.01 * targets.std()  # landmarks within 1% of their spread
    assert np.abs(fit.expression - expression.numpy()).mean() < 0.05  # stated tolerance (|psi| ~ 0.55)
    assert np.abs(fit.jaw - jaw.numpy()).mean() < 0.01
    np.testing.assert_allclose(fit.similarity[0][:3, :3], 50 * rotation, atol=0.5)


def fake_chumpy_pickle(path: str, arrays: dict) -> None:
    """A FLAME-like pickle whose arrays are (fake) chumpy objects, pickled under chumpy's name."""
    module = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = x

        def __reduce__(self):
            return (Ch, (), {"x": self.x})
    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    module.Ch = Ch
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = types.ModuleType("chumpy"), module
    try:
        with open(path, "wb") as f:
            pickle.dump({name: Ch(value) if name in ("shapedirs", "v_template") else value
                         for name, value in arrays.items()}, f, protocol=2)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]


def test_convert_flame_reads_chumpy_pickles_without_chumpy(tmp_path, capsys):
    import scipy.sparse
    arrays = synthetic_flame()
    official = {"v_template": arrays["v_template"].astype(np.float64),
                "shapedirs": np.concatenate([arrays["shapedirs"], arrays["exprdirs"]], axis=2),
                "posedirs": arrays["posedirs"], "J_regressor": scipy.sparse.csc_matrix(arrays["J_regressor"]),
                "kintree_table": np.stack([np.array([4294967295, 0, 1, 1, 1]), np.arange(5)]),
                "weights": arrays["lbs_weights"], "f": arrays["faces"].astype(np.uint32)}
    model_pkl, embedding_pkl, out = tmp_path / "generic_model.pkl", tmp_path / "embedding.pkl", tmp_path / "flame.npz"
    fake_chumpy_pickle(str(model_pkl), official)
    with open(embedding_pkl, "wb") as f:
        pickle.dump({"full_lmk_faces_idx": arrays["lmk_faces_idx"][None],
                     "full_lmk_bary_coords": arrays["lmk_bary_coords"][None]}, f)
    missing = tmp_path / "landmark_embedding.npy"  # a mistyped file is named as itself, not as the model
    assert main(["convert-flame", str(model_pkl), str(out), "--landmarks", str(missing)]) == 2
    assert f"{missing}: no such file; give FLAME's landmark embedding" in capsys.readouterr().err
    out = tmp_path / "new" / "folder" / "flame.npz"  # made, as every command makes its output's folder
    assert main(["convert-flame", str(model_pkl), str(out), "--landmarks", str(embedding_pkl), "--n-shape", "6"]) == 0
    model = FlameModel.load(str(out))
    np.testing.assert_allclose(model.exprdirs.numpy(), arrays["exprdirs"])
    np.testing.assert_allclose(model.J_regressor.numpy(), arrays["J_regressor"], atol=1e-7)
    assert model.parents == [-1, 0, 1, 1, 1] and model.lmk_faces_idx.shape == (68,)


def test_a_pickle_that_runs_code_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    hostile = tmp_path / "model.pkl"
    hostile.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load (posix|os).system"):
        load_untrusted_pickle(str(hostile))
    assert main(["convert-flame", str(hostile), str(tmp_path / "out.npz")]) == 2
    assert "refusing to load" in capsys.readouterr().err
    assert not marker.exists()


def test_backends_command_lists_topology_gpu_and_files(monkeypatch, capsys):
    monkeypatch.delenv(MODEL_ENV, raising=False)
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert "mediapipe" in out and "mediapipe478" in out and "available" in out
    assert "flame" in out and f"set {MODEL_ENV}" in out


def test_choosing_an_unavailable_backend_fails_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(MODEL_ENV, raising=False)
    assert main(["build", "--input", str(tmp_path), "--output", str(tmp_path / "out"), "--backend", "flame"]) == 2
    assert f"backend 'flame' cannot run here: set {MODEL_ENV}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_flame_model_that_is_not_a_converted_npz_fails_before_any_work(tmp_path, media_dir, capsys):
    """A wrong file (here a video) stops the launcher with one line, not every worker's setup
    with a traceback from Beam."""
    wrong = os.path.join(media_dir, "hdtf_aoc_512_25fps.mp4")
    assert main(["build", "--input", str(tmp_path), "--output", str(tmp_path / "out"), "--backend", "flame",
                 "--backend-option", f"flame.model={wrong}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{wrong}: not a FLAME model .npz" in err and "voxmesh convert-flame" in err, err
    assert not (tmp_path / "out").exists()


def test_build_with_the_flame_backend_writes_flame_meshes_and_coefficients(flame_model_file, media_dir, tmp_path):
    import shutil

    from voxmesh.schemas import iter_samples
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(os.path.join(media_dir, "retalking2_844_25fps.mp4"), inputs / "clip.mp4")
    output = str(tmp_path / "out")
    assert main(["build", "--input", str(inputs), "--output", output, "--backend", "flame", "--workers", "1"]) == 0
    assert main(["validate", output]) == 0  # the FLAME topology comes from $VOXMESH_FLAME_MODEL
    with open(os.path.join(output, "dataset.json")) as f:  # metres in FLAME's frame, and the card says so
        assert json.load(f)["head_frame"] == FLAME_HEAD_FRAME
    with open(os.path.join(output, "README.md"), encoding="utf-8") as f:
        assert FLAME_HEAD_FRAME in f.read()
    sample, = iter_samples(output)
    model = FlameModel.load(flame_model_file)
    assert sample.meta.topology == "flame5023" and sample.mesh.shape[1:] == model.v_template.shape
    assert sample.coeffs.shape == (sample.meta.n_frames, model.n_expression + 3)
    assert np.isfinite(sample.mesh).all() and np.isfinite(sample.coeffs).all()
    # neutral.npy: FLAME with the fitted shape (one per track: the clip is shorter than a fit chunk),
    # zero expression and jaw; with the clip's coefficients it gives back every frame of mesh.npy
    arrays = np.load(flame_model_file)
    bases = arrays["shapedirs"].reshape(-1, model.n_shape)
    shape = np.linalg.lstsq(bases, (sample.neutral - arrays["v_template"]).ravel(), rcond=None)[0]
    np.testing.assert_allclose(arrays["v_template"] + (bases @ shape).reshape(-1, 3), sample.neutral, atol=1e-6)
    coeffs = torch.from_numpy(sample.coeffs)
    with torch.no_grad():
        again = model(torch.from_numpy(shape).float(), coeffs[:, :model.n_expression], coeffs[:, model.n_expression:])
    np.testing.assert_allclose(again.numpy(), sample.mesh, atol=1e-5)
    assert np.abs(sample.neutral - sample.mesh.mean(0)).max() > 1e-4
