"""The reconstruction backend interface.

A backend turns the frames of one face track into per-frame 3D vertices with head pose removed,
the head pose, image-space landmarks and a confidence. It is created once per worker, loads its
models in :meth:`setup` (Beam calls it from ``DoFn.setup``), and is :meth:`reset` between tracks
so that no tracking state leaks from one video into the next.

Files a backend needs (models, checkpoints) travel with the job as options: ``--backend-option
flame.model=s3://bucket/flame.npz`` gives the backend ``options={"model": "s3://..."}``; its
:meth:`setup` reads them on the worker through ``voxmesh.schemas.storage`` (any Beam file system).
A backend lists the option names it accepts in :attr:`option_names`; environment variables stay
a convenience for local runs.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import numpy as np

from voxmesh.schemas import Topology, get_topology


@dataclasses.dataclass
class Reconstruction:
    """Per-frame output for ``N`` frames. Frames without a usable face have ``valid`` False and
    NaN geometry; ``n_faces`` counts the faces the backend saw (2 means "at least two").

    Parametric backends may add per frame their identity (shape) coefficients ``identity``, and
    per track (set by :meth:`ReconstructionBackend.finish_track` only, never by ``reconstruct``)
    ``neutral``: the track's face with zero expression and jaw, in ``mesh``'s frame and units."""

    mesh: np.ndarray        # (N, V, 3) float32, canonical head frame
    pose: np.ndarray        # (N, 4, 4) float32, head -> image similarity
    lmk2d: np.ndarray       # (N, L, 2) float32, source pixels
    confidence: np.ndarray  # (N,) float32 in [0, 1]
    n_faces: np.ndarray     # (N,) int16
    coeffs: np.ndarray | None = None  # (N, C) float32 for parametric backends
    identity: np.ndarray | None = None  # (N, S) float32 shape coefficients of parametric backends
    neutral: np.ndarray | None = None   # (V, 3) float32 per track, from finish_track

    @property
    def valid(self) -> np.ndarray:
        return (self.n_faces == 1) & np.isfinite(self.mesh).all(axis=(1, 2))

    def to_source(self, transforms: np.ndarray) -> Reconstruction:
        """Map outputs computed on crops back to source pixels. ``transforms`` (N, 3) holds per
        frame ``(k, x0, y0)`` with crop pixel ``(u, v)`` at source pixel ``(k u + x0, k v + y0)``
        (depth is scaled by ``k`` like x)."""
        k, offset = transforms[:, 0], transforms[:, 1:3]
        to_source = np.zeros((len(k), 4, 4))
        to_source[:, 0, 0] = to_source[:, 1, 1] = to_source[:, 2, 2] = k
        to_source[:, :2, 3] = offset
        to_source[:, 3, 3] = 1.0
        return dataclasses.replace(
            self, pose=(to_source @ self.pose).astype(np.float32),
            lmk2d=(self.lmk2d * k[:, None, None] + offset[:, None, :]).astype(np.float32))

    @staticmethod
    def concatenate(parts: list[Reconstruction]) -> Reconstruction:
        """The parts' frames one after the other; the per-track ``neutral`` is left unset (the
        joined track's :meth:`ReconstructionBackend.finish_track` sets it)."""
        fields = [f.name for f in dataclasses.fields(Reconstruction) if f.name != "neutral"]
        joined: dict[str, Any] = {}
        for name in fields:
            values = [getattr(p, name) for p in parts]
            joined[name] = None if any(v is None for v in values) else np.concatenate(values)
        return Reconstruction(**joined)


class ReconstructionBackend(abc.ABC):
    """Subclass, set the class attributes, implement :meth:`reconstruct`, and register it."""

    name: str = ""
    topology_name: str = ""
    needs_gpu: bool = False
    description: str = ""
    required_files: tuple[str, ...] = ()  # what the user must supply, for `voxmesh backends`
    option_names: tuple[str, ...] = ()    # keys of --backend-option NAME.KEY=VALUE it accepts
    # True when each frame's result depends on that frame alone and finish_track's on its track
    # alone (no tracking state): the pipeline may then batch frames of several runs together, and
    # the processes of a machine may share one loaded model
    frames_independent: bool = False

    def __init__(self, options: dict[str, str] | None = None):
        """``options``: the backend's ``--backend-option`` values by key (see :attr:`option_names`)."""
        self.options = dict(options or {})

    @property
    def version(self) -> str:
        """A string that changes whenever the backend's output can change (model and code)."""
        raise NotImplementedError

    @property
    def topology(self) -> Topology:
        return get_topology(self.topology_name)

    @classmethod
    def unavailable_reason(cls, options: dict[str, str] | None = None) -> str | None:
        """None when the backend can run here with these options; else what is missing and how to
        fix it."""
        return None

    def setup(self) -> None:
        """Load models; called once per worker before any :meth:`reconstruct`."""

    def reset(self) -> None:
        """Forget tracking state; called before each new track."""

    @abc.abstractmethod
    def reconstruct(self, frames: np.ndarray) -> Reconstruction:
        """Reconstruct ``frames`` (N, H, W, 3) uint8 RGB, the next N frames of the current track."""

    def finish_track(self, track: Reconstruction) -> Reconstruction:
        """Called once per track with all its frames' results (landmarks, not pixels): the place
        for per-track work such as fitting a shared shape, and the only place that sets the
        track's ``neutral`` face. The default returns ``track``."""
        return track

    def close(self) -> None:
        """Release models; called from ``DoFn.teardown``."""
