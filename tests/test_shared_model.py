"""One fan3d model per machine, shared by Beam's local worker processes through MultiProcessShared:
created once, and giving the results of a model per process."""

import functools
import os
import uuid

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from voxmesh.pipelines.build.shared_model import SharedBackend, check_share_mode, model_tag, should_share
from voxmesh.recon import backend_class, create_backend
from voxmesh.schemas.errors import ConfigError

TESTS = os.path.dirname(os.path.abspath(__file__))
N_ITEMS = 3


def frames_of(index: int) -> np.ndarray:
    return np.random.default_rng(index).integers(0, 255, (1, 96, 96, 3), dtype=np.uint8)


def counted_fan3d(marker_dir: str, options: dict[str, str]):
    """create_backend("fan3d", options), leaving a file per instance made."""
    open(os.path.join(marker_dir, f"instance-{os.getpid()}-{uuid.uuid4().hex}"), "w").close()
    return create_backend("fan3d", options)


class Reconstruct(beam.DoFn):
    def __init__(self, marker_dir: str, options: dict[str, str], tag: str):
        self.marker_dir, self.options, self.tag = marker_dir, options, tag

    def setup(self):
        open(os.path.join(self.marker_dir, f"process-{os.getpid()}"), "w").close()
        factory = functools.partial(counted_fan3d, self.marker_dir, self.options)
        self.backend = SharedBackend(backend_class("fan3d", self.options), factory, self.tag)
        self.backend.setup()

    def process(self, index: int):
        np.save(os.path.join(self.marker_dir, f"mesh-{index}.npy"), self.backend.reconstruct(frames_of(index)).mesh)
        yield index

    def teardown(self):
        self.backend.close()


def test_worker_processes_share_one_model_and_get_the_per_process_results(fan3d_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]))  # for the workers
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    options = dict(fan3d_weights)
    marker_dir = str(tmp_path)
    tag = f"voxmesh-test-{uuid.uuid4().hex}"
    options_args = ["--runner=FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=3"]
    with beam.Pipeline(options=PipelineOptions(options_args)) as pipeline:
        (pipeline | beam.Create(range(N_ITEMS)) | beam.Reshuffle()
         | beam.ParDo(Reconstruct(marker_dir, options, tag)))
    names = os.listdir(marker_dir)
    assert len([n for n in names if n.startswith("process-")]) >= 2, names  # several processes asked
    assert len([n for n in names if n.startswith("instance-")]) == 1, names  # one model was made

    own = create_backend("fan3d", options)  # the per-process path
    own.setup()
    for index in range(N_ITEMS):
        np.testing.assert_array_equal(np.load(os.path.join(marker_dir, f"mesh-{index}.npy")),
                                      own.reconstruct(frames_of(index)).mesh)


def test_only_backends_without_tracking_state_are_shared():
    from voxmesh.recon.fan3d import Fan3D
    from voxmesh.recon.mediapipe_mesh import MediaPipeFaceMesh
    assert should_share("always", Fan3D) and not should_share("never", Fan3D)
    assert not should_share("auto", MediaPipeFaceMesh)  # tracking state: one per process, GPU or not
    check_share_mode("always", Fan3D)
    with pytest.raises(ConfigError, match="cannot be shared"):
        check_share_mode("always", MediaPipeFaceMesh)
    with pytest.raises(ConfigError, match="cannot be shared"):
        SharedBackend(MediaPipeFaceMesh, MediaPipeFaceMesh, "tag")
    assert model_tag("fan3d", {"fan": "a"}) == model_tag("fan3d", {"fan": "a"}) != model_tag("fan3d", {"fan": "b"})
