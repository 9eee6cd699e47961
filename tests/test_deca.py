"""The ``deca`` backend: a checkpoint with DECA's exact state-dict keys and shapes (the fixture,
listed from DECA's published code) and random weights, on a synthetic FLAME-format model with
DECA's 100 shape and 50 expression components, through the conformance suite; the loader's
refusals (wrong keys, wrong shapes, a pickle that would run code)."""

import dataclasses
import os
import pickle

import numpy as np
import pytest
import torch
from deca_synthetic import published_keys
from test_recon_backends import talking_frames

from voxmesh.recon.deca import DecaBackend, crop_grid, load_encoder, smooth_runs
from voxmesh.recon.deca_net import DecaCoarseEncoder
from voxmesh.recon.flame import FlameModel
from voxmesh.recon.testing import check_backend
from voxmesh.schemas.errors import ConfigError
from voxmesh.schemas.weights import read_tensors


def test_fixture_keys_are_what_the_loader_expects():
    own = {name: tuple(value.shape) for name, value in DecaCoarseEncoder().state_dict().items()}
    assert own == published_keys()
    assert len(own) == 322


def test_deca_backend_conforms(deca_files):
    checkpoint, model = deca_files
    backend = DecaBackend(checkpoint, model)
    result = check_backend(backend, talking_frames(4), atol=1e-4)
    assert result.valid.all()
    assert result.mesh.shape == (4, 300, 3) and result.coeffs.shape == (4, 53)
    assert backend.topology_name == "flame5023_lmk68" and result.lmk2d.shape == (4, 68, 2)
    # lmk2d is the FLAME embedding of mesh.npy moved by pose.npy (head -> crop pixels)
    flame = FlameModel.load(model)
    landmarks = flame.landmarks(torch.from_numpy(result.mesh)).numpy()
    moved = np.einsum("bij,blj->bli", result.pose[:, :3, :3], landmarks) + result.pose[:, None, :3, 3]
    np.testing.assert_allclose(moved[..., :2], result.lmk2d, rtol=1e-4, atol=1e-2)
    assert np.linalg.det(result.pose[:, :3, :3]).min() > 0  # a proper similarity (right-handed)


def test_deca_crop_is_decas_box_crop():
    grid, (k, x0, y0) = crop_grid(256, 256)
    box = 256 / 1.8
    side = int(1.25 * box)
    assert k == pytest.approx(side / 223) and x0 == pytest.approx(128 - side / 2)
    assert y0 == pytest.approx(128 + 0.12 * box - side / 2)
    # grid corners are the crop corners in grid_sample's normalised coordinates
    assert grid[0, 0, 0, 0].item() == pytest.approx(2 * x0 / 255 - 1, abs=1e-5)
    assert grid[0, -1, -1, 1].item() == pytest.approx(2 * (y0 + 223 * k) / 255 - 1, abs=1e-5)


def test_smoothing_is_off_by_default_and_stays_inside_valid_runs(deca_files):
    checkpoint, model = deca_files
    assert DecaBackend(checkpoint, model).smooth_sigma == 0
    values = np.zeros((10, 2), dtype=np.float32)
    values[::2] = 1.0
    valid = np.array([1, 1, 1, 1, 0, 1, 1, 1, 1, 1], dtype=bool)
    smoothed = smooth_runs(values, valid, 2.0)
    assert smoothed[4].tolist() == values[4].tolist()  # invalid frame untouched
    assert np.ptp(smoothed[5:]) < np.ptp(values[5:]) / 2  # jitter reduced
    assert smoothed.dtype == np.float32


def test_wrong_keys_name_the_file_the_first_keys_and_the_network(tmp_path):
    path = str(tmp_path / "other.pt")
    state = DecaCoarseEncoder().state_dict()
    state.pop("encoder.conv1.weight")
    state["head.weight"] = torch.zeros(2)
    torch.save({"E_flame": state}, path)
    with pytest.raises(ConfigError) as error:
        load_encoder(path)
    message = str(error.value)
    assert "\n" not in message and path in message
    assert "encoder.conv1.weight" in message and "head.weight" in message and "DECA's coarse encoder" in message


def test_wrong_shape_is_refused(tmp_path):
    path = str(tmp_path / "other.pt")
    state = DecaCoarseEncoder().state_dict()
    state["layers.2.weight"] = torch.zeros(100, 1024)
    torch.save(state, path)
    with pytest.raises(ConfigError, match="layers.2.weight"):
        load_encoder(path)


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    path = str(tmp_path / "evil.tar")
    with open(path, "wb") as f:
        pickle.dump({"E_flame": RunsCode()}, f)
    torch.save({"E_flame": {"x": RunsCode()}}, str(tmp_path / "evil2.tar"))
    for candidate in (path, str(tmp_path / "evil2.tar")):
        with pytest.raises(ConfigError, match="not a plain tensor checkpoint"):
            read_tensors(candidate)


def test_deca_neutral_is_flame_of_the_tracks_mean_shape_code(deca_files):
    """DECA regresses a shape per frame: the track's neutral face is FLAME (written out here from the
    model's arrays) with the mean of its valid frames' shape codes, zero expression and jaw."""
    checkpoint, model_path = deca_files
    backend = DecaBackend(checkpoint, model_path)
    backend.setup()
    try:
        per_frame = backend.reconstruct(talking_frames(4))
        assert per_frame.neutral is None and per_frame.identity.shape == (4, 100)
        flame = FlameModel.load(model_path)
        coeffs = torch.from_numpy(per_frame.coeffs)
        with torch.no_grad():  # each frame's mesh was decoded with that frame's shape code
            decoded = flame(torch.from_numpy(per_frame.identity), coeffs[:, :50], coeffs[:, 50:]).numpy()
        np.testing.assert_allclose(decoded, per_frame.mesh, rtol=1e-5, atol=1e-5)
        # the random encoder barely tells these frames apart: give the frames distinct codes, and
        # take frame 1 out of the track's faces
        codes = np.random.default_rng(0).normal(0, 1, (4, 100)).astype(np.float32)
        n_faces = np.array([1, 0, 1, 1], dtype=np.int16)
        result = backend.finish_track(dataclasses.replace(per_frame, identity=codes, n_faces=n_faces))
    finally:
        backend.close()
    with np.load(model_path) as arrays:
        mean_code = codes[[0, 2, 3]].astype(np.float64).mean(0)
        expected = arrays["v_template"] + np.einsum("vcs,s->vc", arrays["shapedirs"], mean_code)
    assert result.neutral.dtype == np.float32 and result.neutral.shape == (300, 3)
    np.testing.assert_allclose(result.neutral, expected, rtol=1e-5, atol=1e-6)
    assert np.abs(result.neutral - result.mesh.mean(0)).max() > 1e-3  # not the track's mean face


def test_a_damaged_checkpoint_found_by_a_worker_ends_the_build_with_its_one_line(deca_files, media_dir, tmp_path,
                                                                                 monkeypatch, capsys):
    """The launcher checks that the weights files exist; the worker that sets DECA up finds the
    checkpoint damaged. Beam passes that on as the text of its own error: the build still ends with
    the worker's one line (exit 2), not Beam's traceback."""
    from voxmesh.cli import main
    from voxmesh.recon.deca import CHECKPOINT_ENV, MODEL_ENV
    (tmp_path / "in").mkdir()
    os.symlink(os.path.join(media_dir, "hdtf_aoc_512_25fps.mp4"), tmp_path / "in" / "clip.mp4")
    damaged = tmp_path / "deca_model.tar"
    damaged.write_bytes(b"\x80\x02not a checkpoint" * 100)
    monkeypatch.setenv(CHECKPOINT_ENV, str(damaged))
    monkeypatch.setenv(MODEL_ENV, deca_files[1])
    argv = ["build", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--backend", "deca",
            "--workers", "1"]
    assert main(argv) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"voxmesh build: {damaged}: not a plain tensor checkpoint"), last
    assert last.endswith("(raised in a worker; fix it, then run the same command with --resume)")


def test_a_workers_bug_while_it_handled_a_user_error_keeps_its_traceback():
    """Only the exception a worker ended with decides: a bug raised while a user error was being
    handled is a bug, and keeps Beam's error with its traceback."""
    from voxmesh.pipelines.build.pipeline import user_errors_from_workers
    text = ("Traceback (most recent call last):\nvoxmesh.schemas.errors.MissingFileError: x: no such file\n\n"
            "During handling of the above exception, another exception occurred:\n\nTraceback (most recent call "
            "last):\nTypeError: unsupported operand [while running 'BuildPart']")
    with pytest.raises(RuntimeError, match="TypeError"), user_errors_from_workers():
        raise RuntimeError(text)
    with pytest.raises(ConfigError, match=r"^x: no such file \(raised in a worker"), user_errors_from_workers():
        raise RuntimeError(text.split("\n\nDuring")[0] + " [while running 'BuildPart']")
