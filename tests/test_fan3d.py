"""The fan3d backend's loading path (weights made in the test: the real ones cannot be downloaded
here), its refusal of pickled objects, its topology, its depth orientation and the depth network's
landmark maps. Its conformance run
is in test_recon_backends.py."""

import os
import shutil

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from voxmesh.cli import main
from voxmesh.pipelines.ingest.faces import TrackRules
from voxmesh.recon import BackendUnavailable, backend_class
from voxmesh.recon.fan3d import (
    CROP_FACE_FRACTION,
    WEIGHTS_ENV,
    Fan3D,
    build_topology,
    find_weights,
    landmark_targets,
    load_state_dict,
    orient_depth,
)
from voxmesh.recon.pose import remove_pose
from voxmesh.schemas import get_topology


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path


def test_weights_are_found_in_a_prefilled_torch_hub_cache(fan3d_weights, no_weights):
    checkpoints = no_weights / "torch_home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for path in fan3d_weights.values():
        os.symlink(path, checkpoints / os.path.basename(path))
    assert find_weights() == {role: str(checkpoints / os.path.basename(path)) for role, path in fan3d_weights.items()}
    backend = backend_class("fan3d")()
    backend.setup()
    assert backend.fan is not None and backend.depth is not None
    assert "3DFAN4" in backend.version and "depth" in backend.version


def test_missing_weights_make_the_backend_unavailable_with_the_file_names(no_weights, tmp_path, capsys):
    reason = Fan3D.unavailable_reason()
    assert "3DFAN4-" in reason and "depth-" in reason and str(tmp_path / "torch_home") in reason
    assert WEIGHTS_ENV in reason and "https://" in reason
    with pytest.raises(BackendUnavailable, match="backend 'fan3d' cannot run here"):
        backend_class("fan3d")
    assert main(["build", "--input", str(tmp_path), "--output", str(tmp_path / "out"), "--backend", "fan3d"]) == 2
    assert "3DFAN4-" in capsys.readouterr().err and not (tmp_path / "out").exists()


class Hostile:
    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_holding_objects_is_refused_not_unpickled(tmp_path):
    Hostile.marker = str(tmp_path / "ran")
    path = str(tmp_path / "depth.pth.tar")
    torch.save({"state_dict": {"weight": torch.zeros(1)}, "extra": Hostile()}, path)
    with pytest.raises(ValueError, match="does not unpickle"):
        load_state_dict(path)
    assert not os.path.exists(Hostile.marker)


def test_weights_of_the_wrong_network_name_the_file(fan3d_weights, tmp_path, monkeypatch):
    folder = tmp_path / "swapped"
    folder.mkdir()
    fan, depth = fan3d_weights["fan"], fan3d_weights["depth"]
    shutil.copy(depth, folder / os.path.basename(fan))  # the depth network under FAN's name
    os.symlink(depth, folder / os.path.basename(depth))
    monkeypatch.setenv(WEIGHTS_ENV, str(folder))
    with pytest.raises(ValueError, match=os.path.basename(fan)):
        Fan3D().setup()


def test_the_shipped_topology_is_the_derived_one_and_fits_the_pipelines_crops():
    shipped, derived = get_topology("fan68"), build_topology()
    for field in ("template", "faces", "lip_idx", "upper_face_idx", "stable_idx"):
        assert np.array_equal(getattr(shipped, field), getattr(derived, field)), field
    assert shipped.n_vertices == shipped.n_landmarks == 68
    assert pytest.approx(1 / TrackRules().crop_scale) == CROP_FACE_FRACTION


def test_depth_is_oriented_so_that_pose_removal_recovers_the_face():
    """A face in image axes (x right, y down, z away from the camera), turned 30 degrees, with its
    depth given in either direction: oriented, pose removal brings back the template."""
    template = get_topology("fan68").template.astype(np.float64)
    to_image = np.diag([1.0, -1.0, -1.0])  # head frame (y up, z out of the face) -> image axes
    turned = Rotation.from_euler("y", 30, degrees=True).as_matrix()
    points = 12.0 * template @ (to_image @ turned).T + np.array([128.0, 120.0, 0.0])
    flipped = points * np.array([1.0, 1.0, -1.0])
    oriented = orient_depth(np.stack([points, flipped]))
    assert np.allclose(oriented[0], points) and np.allclose(oriented[1], points)
    canonical, _, residual = remove_pose(oriented, template, get_topology("fan68").stable_idx)
    assert np.allclose(canonical, template, atol=1e-6) and (residual < 1e-6).all()


def test_landmark_maps_are_face_alignments_drawn_at_once():
    """The vectorized maps equal face_alignment.utils.draw_gaussian's, point by point: inside the
    crop, across each border, at the border pixels where its window starts early, outside it,
    and points it skips (a coordinate <= 0)."""
    from face_alignment.utils import draw_gaussian

    rng = np.random.default_rng(0)
    size = 64
    points = rng.uniform(-20, size + 20, (3, 68, 2))
    points[0, :20] = rng.integers(-8, 10, (20, 2)) + rng.uniform(0, 1, (20, 2))  # the top and left borders
    points[1, :20] = size + rng.integers(-10, 8, (20, 2)) + rng.uniform(0, 1, (20, 2))  # bottom and right
    points[2, :6] = [[0.0, 5.0], [5.0, 0.0], [6.0, 6.0], [7.0, 7.0], [1e-3, 1e-3], [5.0, -3.0]]
    expected = np.zeros((3, 68, size, size), np.float32)
    for i, j in zip(*np.nonzero((points[:, :, 0] > 0) & (points[:, :, 1] > 0))):
        expected[i, j] = draw_gaussian(expected[i, j], points[i, j], 2)
    assert np.array_equal(landmark_targets(points, size).numpy(), expected)
    assert 0 < np.count_nonzero(expected.any(axis=(2, 3))) < 3 * 68  # some drawn, some skipped
