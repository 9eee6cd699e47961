"""The package, the worker image and the shipped data agree with each other."""

import os
import re

import numpy as np

ROOT = os.path.join(os.path.dirname(__file__), "..")


def read(name: str) -> str:
    with open(os.path.join(ROOT, name)) as f:
        return f.read()


def test_dockerfile_uses_the_python_and_beam_of_setup_py():
    setup, dockerfile, constraints = read("setup.py"), read("Dockerfile"), read("constraints.txt")
    beam = re.search(r'"apache-beam==([\d.]+)"', setup).group(1)
    python = re.search(r'python_requires=">=(3\.\d+)', setup).group(1)
    assert f"FROM apache/beam_python{python}_sdk:{beam}" in dockerfile
    assert f"apache-beam=={beam}" in constraints.splitlines()
    for folder in ("voxmesh", "schemas", "recon", "pipelines", "metrics"):
        assert f"COPY {folder} {folder}" in dockerfile


def test_mediapipe_backend_is_registered_through_the_entry_point_group():
    from voxmesh.recon import backend_class, backend_classes
    from voxmesh.recon.mediapipe_mesh import MediaPipeFaceMesh
    assert backend_classes()["mediapipe"] is MediaPipeFaceMesh
    assert backend_class("mediapipe") is MediaPipeFaceMesh


def test_unknown_backend_fails_before_any_work_with_a_clear_error(tmp_path, capsys):
    from voxmesh.cli import main
    assert main(["build", "--input", str(tmp_path), "--output", str(tmp_path / "out"), "--backend", "nope"]) == 2
    assert "unknown reconstruction backend 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_shipped_mediapipe_topology_is_what_build_topology_makes():
    from skimage import data

    from voxmesh.recon.mediapipe_mesh import build_topology
    from voxmesh.schemas import get_topology
    shipped, rebuilt = get_topology("mediapipe478"), build_topology(data.astronaut())
    np.testing.assert_allclose(shipped.template, rebuilt.template, atol=1e-3)
    for field in ("faces", "lip_idx", "upper_face_idx", "stable_idx"):
        np.testing.assert_array_equal(getattr(shipped, field), getattr(rebuilt, field))
    assert shipped.n_vertices == shipped.n_landmarks == 478
