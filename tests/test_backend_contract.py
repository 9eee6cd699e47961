"""What a build does with a backend that breaks its contract, as a researcher adding one meets it:
output of the wrong type, shape or dtype stops the build with one line naming the backend and
the field (it would be wrong for every input); wrong values on frames counted as a face fail
that input with a reason; a package that cannot be imported, or registers a backend under
another name, hides no other backend; a backend's own user errors from a worker are one line."""

import dataclasses
import json
import os
import re
from importlib.metadata import EntryPoint

import numpy as np
import pytest

from voxmesh.cli import main
from voxmesh.pipelines.build import pipeline as build
from voxmesh.pipelines.build.inputs import PartTask
from voxmesh.pipelines.build.pipeline import BuildConfig, BuildPart, user_errors_from_workers
from voxmesh.pipelines.ingest.item import InputItem
from voxmesh.recon import Reconstruction, ReconstructionBackend, backend_class, backend_classes
from voxmesh.recon.base import BackendContractError, check_structure, check_values
from voxmesh.recon.registry import GROUP, BackendUnavailable
from voxmesh.recon.testing import check_backend
from voxmesh.schemas import get_topology
from voxmesh.schemas.errors import ConfigError, UserError


class ToyBackend(ReconstructionBackend):
    """The topology's template on every frame, facing the camera, 100 crop pixels wide; ``mode``
    breaks one part of the contract."""

    name = "toy"
    topology_name = "mediapipe478"
    frames_independent = True
    version = "toy-1"

    def __init__(self, mode: str = "", options=None):
        super().__init__(options)
        self.mode = mode

    def reconstruct(self, frames: np.ndarray) -> Reconstruction:
        n, topology = len(frames), self.topology
        pose = np.tile(np.diag([10.0, -10.0, -10.0, 1.0]).astype(np.float32), (n, 1, 1))
        pose[:, :2, 3] = 128
        result = Reconstruction(
            mesh=np.tile(topology.template, (n, 1, 1)).astype(np.float32), pose=pose,
            lmk2d=np.full((n, topology.n_landmarks, 2), 128, np.float32), confidence=np.full(n, 0.9, np.float32),
            n_faces=np.ones(n, np.int16))
        broken = {"": {}, "shape": {"mesh": result.mesh[:, :-1]}, "transposed": {"mesh": result.mesh.transpose(0, 2, 1)},
                  "frames": {"pose": pose[:-1]}, "list": {"confidence": [0.9] * n},
                  "float64": {"lmk2d": result.lmk2d.astype(np.float64)},
                  "nan_pose": {"pose": np.full_like(pose, np.nan)}, "nan_lmk2d": {"lmk2d": result.lmk2d * np.nan},
                  "confidence": {"confidence": np.full(n, 2.0, np.float32)}}
        if self.mode == "none":
            return None  # type: ignore[return-value]
        return dataclasses.replace(result, **broken[self.mode])


class NoVersion(ToyBackend):
    version = ReconstructionBackend.version


STRUCTURE = {"shape": "mesh is float32(4, 477, 3), expected float32(4, 478, 3) (topology mediapipe478)",
             "transposed": "mesh is float32(4, 3, 478), expected float32(4, V, 3)",
             "frames": "pose is float32(3, 4, 4), expected float32(4, 4, 4)",
             "list": "confidence is list, expected float32(4,)",
             "float64": "lmk2d is float64(4, 478, 2), expected float32(4, L, 2)",
             "none": "reconstruct returned NoneType, not a Reconstruction"}
VALUES = {"nan_pose": "non-finite pose on 4 of the 4 frames it counted as a face",
          "nan_lmk2d": "non-finite lmk2d on 4 of the 4 frames it counted as a face",
          "confidence": "confidence outside [0, 1] (from 2 to 2)"}


@pytest.mark.parametrize("mode", sorted(STRUCTURE) + sorted(VALUES))
def test_each_break_of_the_contract_is_named_and_the_suite_finds_it(mode):
    backend = ToyBackend(mode)
    frames = np.zeros((4, 256, 256, 3), np.uint8)
    with pytest.raises(BackendContractError if mode in STRUCTURE else ValueError) as raised:
        result = backend.reconstruct(frames)
        for finished in (False, True):
            check_structure("toy", get_topology("mediapipe478"), result, 4, finished)
        check_values("toy", result)
    assert str(raised.value).startswith(f"backend toy: {STRUCTURE.get(mode) or VALUES[mode]}"), str(raised.value)
    with pytest.raises(AssertionError, match=f"^backend toy: {re.escape(STRUCTURE.get(mode) or VALUES[mode])}"):
        check_backend(backend, frames)
    assert check_backend(ToyBackend(), frames).valid.all()


def test_a_backend_without_a_version_is_named_by_the_suite_and_the_launcher():
    with pytest.raises(BackendContractError, match="^backend toy: no version; give its class a `version` property"):
        NoVersion().version  # noqa: B018 - reading it is what raises
    with pytest.raises(BackendContractError):
        check_backend(NoVersion(), np.zeros((2, 256, 256, 3), np.uint8))


def part_with(backend: ReconstructionBackend, tmp_path, media_dir, monkeypatch) -> dict:
    """BuildPart, called directly, on one real clip with ``backend``: the part's stats."""
    monkeypatch.setattr(build, "make_backend", lambda *args: backend)
    config = BuildConfig(input=media_dir, output=str(tmp_path / "out"), backend=backend.name)
    clip = os.path.join(media_dir, "hdtf_aoc_512_25fps.mp4")
    part = BuildPart(config)
    part.setup()
    try:
        assert list(part.process(PartTask("train", 0, (InputItem(clip, "s", "v", "0"),)))) == ["train-000000"]
    finally:
        part.teardown()
    with open(os.path.join(config.output, "_meta", "parts", "train-000000.stats.json")) as f:
        return json.load(f)


def test_a_build_stops_at_output_of_the_wrong_shape_and_records_wrong_values_as_the_inputs_failure(
        tmp_path, media_dir, monkeypatch):
    with pytest.raises(BackendContractError, match=r"^backend toy: mesh is float32\(\d+, 477, 3\), expected"):
        part_with(ToyBackend("shape"), tmp_path / "shape", media_dir, monkeypatch)
    stats = part_with(ToyBackend("nan_pose"), tmp_path / "nan", media_dir, monkeypatch)
    failure, = stats["failures"]
    assert stats["samples"] == [] and failure["reason"] == "internal_error"
    assert re.search(r"ValueError: backend toy: non-finite pose on (\d+) of the \1 frames it counted as a face",
                     failure["detail"]), failure["detail"]
    assert len(part_with(ToyBackend(), tmp_path / "good", media_dir, monkeypatch)["samples"]) == 1


def test_a_topology_that_is_not_registered_stops_the_workers_set_up(tmp_path, media_dir, monkeypatch):
    unknown = ToyBackend()
    unknown.topology_name = "nope9"
    with pytest.raises(BackendContractError, match="^backend toy: unknown topology 'nope9'; known: "):
        part_with(unknown, tmp_path, media_dir, monkeypatch)


class PluginWeightsMissing(UserError, FileNotFoundError):
    """A backend package's own error for the user."""


def test_a_backend_packages_own_user_error_from_a_worker_is_one_line():
    worker_text = (f"Traceback (most recent call last):\n  ...\n{__name__}.PluginWeightsMissing: toy weights not "
                   f"found; pass --backend-option toy.weights=PATH [while running 'BuildPart']")
    with pytest.raises(ConfigError) as raised, user_errors_from_workers():
        raise RuntimeError(worker_text)
    assert str(raised.value) == ("toy weights not found; pass --backend-option toy.weights=PATH (raised in a worker; "
                                 "fix it, then run the same command with --resume)")


def test_a_package_that_cannot_be_imported_or_names_its_backend_otherwise_hides_no_other(monkeypatch, capsys):
    from voxmesh.recon import registry
    real = registry.entry_points
    extra = [EntryPoint("broken", "no_such_package_xyz.backend:Backend", GROUP),
             EntryPoint("alias", f"{__name__}:ToyBackend", GROUP)]
    monkeypatch.setattr(registry, "entry_points", lambda group: [*real(group=group), *extra])
    found = backend_classes()
    assert isinstance(found["broken"], BackendUnavailable) and isinstance(found["alias"], BackendUnavailable)
    assert found["mediapipe"].name == "mediapipe"
    assert main(["backends"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert ("broken\tunavailable: no_such_package_xyz.backend:Backend cannot be imported (ModuleNotFoundError: No "
            "module named 'no_such_package_xyz'); fix or reinstall the package that registers backend 'broken'") in lines
    assert (f"alias\tunavailable: {__name__}:ToyBackend is named 'toy' but registered as 'alias'; give its `name` and "
            f"its entry point the same name") in lines
    assert any(line.startswith("mediapipe\ttopology mediapipe478") for line in lines)
    with pytest.raises(BackendUnavailable, match="cannot be imported"):
        backend_class("broken")
