"""One model per machine for the backends whose frames are independent (fan3d, DECA), shared by
Beam's local worker processes through MultiProcessShared: created once, and giving the results
of a model per process."""

import functools
import glob
import os
import tempfile
import uuid

import apache_beam as beam
import numpy as np
import pytest
import torch
from apache_beam.options.pipeline_options import PipelineOptions

from voxmesh.pipelines.build.shared_model import SharedBackend, check_share_mode, model_tag, should_share
from voxmesh.recon import backend_class, create_backend
from voxmesh.schemas.errors import ConfigError

TESTS = os.path.dirname(os.path.abspath(__file__))
N_ITEMS = 3


def frames_of(index: int) -> np.ndarray:
    return np.random.default_rng(index).integers(0, 255, (1, 96, 96, 3), dtype=np.uint8)


def counted_backend(marker_dir: str, name: str, options: dict[str, str]):
    """create_backend(name, options), leaving a file per instance made."""
    open(os.path.join(marker_dir, f"instance-{os.getpid()}-{uuid.uuid4().hex}"), "w").close()
    return create_backend(name, options)


class Reconstruct(beam.DoFn):
    def __init__(self, marker_dir: str, name: str, options: dict[str, str], tag: str):
        self.marker_dir, self.name, self.options, self.tag = marker_dir, name, options, tag

    def setup(self):
        open(os.path.join(self.marker_dir, f"process-{os.getpid()}"), "w").close()
        factory = functools.partial(counted_backend, self.marker_dir, self.name, self.options)
        self.backend = SharedBackend(backend_class(self.name, self.options), factory, self.tag)
        self.backend.setup()

    def process(self, index: int):
        recon = self.backend.reconstruct(frames_of(index))
        np.save(os.path.join(self.marker_dir, f"mesh-{index}.npy"), recon.mesh)
        topology = self.backend.topology  # registered in this process as the served backend set it up
        with open(os.path.join(self.marker_dir, f"topology-{index}.txt"), "w") as f:
            f.write(f"{topology.name} {topology.n_vertices}")
        yield index

    def teardown(self):
        self.backend.close()


@pytest.fixture
def deca_options(deca_files) -> dict[str, str]:
    checkpoint, model = deca_files
    return {"checkpoint": checkpoint, "model": model}


@pytest.fixture
def tag():
    """A sharing tag of this test alone; Beam's sharing leaves the tag's lock and address files in
    the temp folder, removed afterwards."""
    unique = f"voxmesh-test-{uuid.uuid4().hex}"
    yield unique
    for leftover in glob.glob(os.path.join(tempfile.gettempdir(), f"{unique}.*")):
        os.remove(leftover)


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")  # a worker that failed
@pytest.mark.parametrize("name", ["fan3d", "deca"])
def test_worker_processes_share_one_model_and_get_the_per_process_results(name, request, tmp_path, monkeypatch, tag):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]))  # for the workers
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    options = dict(request.getfixturevalue("fan3d_weights" if name == "fan3d" else "deca_options"))
    marker_dir = str(tmp_path / "markers")
    os.mkdir(marker_dir)
    options_args = ["--runner=FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=3"]
    with beam.Pipeline(options=PipelineOptions(options_args)) as pipeline:
        (pipeline | beam.Create(range(N_ITEMS)) | beam.Reshuffle()
         | beam.ParDo(Reconstruct(marker_dir, name, options, tag)))
    names = os.listdir(marker_dir)
    assert len([n for n in names if n.startswith("process-")]) >= 2, names  # several processes asked
    assert len([n for n in names if n.startswith("instance-")]) == 1, names  # one model was made

    own = create_backend(name, options)  # the per-process path, on one thread as the workers (a
    own.setup()                          # matrix product's float sums depend on the thread count)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for index in range(N_ITEMS):
            np.testing.assert_array_equal(np.load(os.path.join(marker_dir, f"mesh-{index}.npy")),
                                          own.reconstruct(frames_of(index)).mesh)
            with open(os.path.join(marker_dir, f"topology-{index}.txt")) as f:
                assert f.read() == f"{own.topology.name} {own.topology.n_vertices}"
    finally:
        torch.set_num_threads(threads)


def test_only_backends_whose_frames_are_independent_are_shared():
    from voxmesh.recon.deca import DecaBackend
    from voxmesh.recon.fan3d import Fan3D
    from voxmesh.recon.flame import FlameBackend
    from voxmesh.recon.mediapipe_mesh import MediaPipeFaceMesh
    for cls in (Fan3D, DecaBackend):
        assert should_share("always", cls) and not should_share("never", cls)
        check_share_mode("always", cls)
        assert cls.frames_independent  # the pipeline batches their frames across runs
        SharedBackend(cls, cls, "tag")
    for cls in (MediaPipeFaceMesh, FlameBackend):  # tracking, warm starts: one per process, GPU or not
        assert not should_share("auto", cls) and not cls.frames_independent
        with pytest.raises(ConfigError, match="cannot be shared"):
            check_share_mode("always", cls)
    with pytest.raises(ConfigError, match="cannot be shared"):
        SharedBackend(MediaPipeFaceMesh, MediaPipeFaceMesh, "tag")
    assert model_tag("fan3d", {"fan": "a"}) == model_tag("fan3d", {"fan": "a"}) != model_tag("fan3d", {"fan": "b"})


def host_the_model(options: dict[str, str], tag: str, served, leave) -> None:
    """A worker process that asks first, so serves the model; it exits when told to."""
    backend = SharedBackend(backend_class("fan3d", options), functools.partial(create_backend, "fan3d", options), tag)
    backend.setup()
    served.set()
    leave.wait(60)


def test_a_worker_whose_model_server_has_exited_still_tears_down(fan3d_weights, tag):
    """Beam's local runner stops its workers one after the other, the serving one possibly first:
    the others' teardown (releasing the model) must then not fail."""
    import multiprocessing
    options = dict(fan3d_weights)
    context = multiprocessing.get_context("spawn")
    served, leave = context.Event(), context.Event()
    host = context.Process(target=host_the_model, args=(options, tag, served, leave))
    host.start()
    assert served.wait(120)
    client = SharedBackend(backend_class("fan3d", options), functools.partial(create_backend, "fan3d", options), tag)
    client.setup()  # served by the host process
    assert client.reconstruct(frames_of(0)).mesh.shape[0] == 1
    leave.set()
    host.join(60)
    assert host.exitcode == 0
    client.close()  # the server is gone: nothing to release, and no error
