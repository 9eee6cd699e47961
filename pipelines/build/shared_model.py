"""One reconstruction model per worker machine, shared by the machine's SDK processes.

A Dataflow GPU worker runs one SDK process per vCPU; each loading its own copy of a GPU model
would fill the GPU several times over. As Beam's RunInference does with
``share_model_across_processes``, :class:`SharedBackend` keeps one set-up backend per machine in
``apache_beam.utils.multi_process_shared.MultiProcessShared`` (served by the first process that
asks for it; the others find it through a file in the machine's temp folder) and sends it each
chunk of frames (``reconstruct``) and each finished track (``finish_track``) as a batch.

Only backends whose frames are independent (no tracking state between calls:
``ReconstructionBackend.frames_independent``, e.g. ``fan3d`` and ``deca``) can be shared; the
results are the same as with one backend per process.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from collections.abc import Callable
from typing import Any

import numpy as np

from voxmesh.recon import Reconstruction, ReconstructionBackend
from voxmesh.schemas import Topology, register_topology
from voxmesh.schemas.errors import ConfigError

SHARE_MODES = ("auto", "always", "never")


class ServedBackend:
    """What lives in the serving process: one set-up backend, called by method (properties do
    not cross a process boundary, hence :meth:`version` and :meth:`topology`)."""

    def __init__(self, factory: Callable[[], ReconstructionBackend]):
        self._backend = factory()
        self._backend.setup()

    def reconstruct(self, frames: np.ndarray) -> Reconstruction:
        return self._backend.reconstruct(frames)

    def finish_track(self, track: Reconstruction) -> Reconstruction:
        return self._backend.finish_track(track)

    def version(self) -> str:
        return self._backend.version

    def topology(self) -> Topology:
        """The topology as set up (DECA's depends on the model file's landmark embedding)."""
        return self._backend.topology


class SharedBackend(ReconstructionBackend):
    """A backend of class ``cls`` made by ``factory`` once per machine and ``tag`` (processes
    asking with the same tag share it)."""

    frames_independent = True  # only such backends can be shared (checked in __init__)

    def __init__(self, cls: type[ReconstructionBackend], factory: Callable[[], ReconstructionBackend], tag: str):
        super().__init__()
        if not cls.frames_independent:
            raise ConfigError(f"backend {cls.name!r} keeps state between calls and cannot be shared across processes")
        self.name, self.topology_name, self.needs_gpu = cls.name, cls.topology_name, cls.needs_gpu
        self.factory, self.tag = factory, tag
        self._shared: Any = None
        self._model: Any = None
        self._version = ""

    @property
    def version(self) -> str:
        return self._version

    def setup(self) -> None:
        from apache_beam.utils.multi_process_shared import MultiProcessShared
        self._shared = MultiProcessShared(functools.partial(ServedBackend, self.factory), tag=self.tag,
                                          always_proxy=True)
        self._model = self._shared.acquire()
        self._version = self._model.version()
        topology = self._model.topology()
        register_topology(topology)  # as the backend's own setup does, in this process
        self.topology_name = topology.name

    def reconstruct(self, frames: np.ndarray) -> Reconstruction:
        return self._model.reconstruct(frames)

    def finish_track(self, track: Reconstruction) -> Reconstruction:
        return self._model.finish_track(track)

    def close(self) -> None:
        """Release this process's hold on the model. The process serving it may already have
        exited (Beam's local runner stops its workers one after the other, the server's first):
        then there is nothing left to release, and the worker's teardown must not fail for it."""
        if self._model is not None:
            with contextlib.suppress(ConnectionError, EOFError):
                self._shared.release(self._model)
            self._model = None


def model_tag(name: str, options: dict[str, str]) -> str:
    """The sharing tag of a backend and its options: equal configs share one model."""
    digest = hashlib.sha1(json.dumps([name, sorted(options.items())]).encode("utf-8")).hexdigest()[:16]
    return f"voxmesh-{name}-{digest}"


def check_share_mode(mode: str, cls: type[ReconstructionBackend]) -> None:
    """ConfigError, before any work, for a mode that cannot apply to ``cls``."""
    if mode not in SHARE_MODES:
        raise ConfigError(f"--share-model {mode}: expected one of {', '.join(SHARE_MODES)}")
    if mode == "always" and not cls.frames_independent:
        raise ConfigError(f"--share-model always: backend {cls.name!r} keeps tracking state between calls and "
                          f"cannot be shared across processes; use auto or never")


def should_share(mode: str, cls: type[ReconstructionBackend]) -> bool:
    """``always``; ``never``; ``auto``: a backend whose frames are independent on a machine with a
    CUDA GPU."""
    if mode != "auto":
        return mode == "always"
    return cls.frames_independent and _cuda_available()


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def make_backend(name: str, options: dict[str, str], mode: str) -> ReconstructionBackend:
    """The backend a worker process uses: its own instance, or its share of the machine's one."""
    from voxmesh.recon import backend_class
    cls = backend_class(name, options)
    factory = functools.partial(cls, options=options)
    return SharedBackend(cls, factory, model_tag(name, options)) if should_share(mode, cls) else factory()
