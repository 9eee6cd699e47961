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
from typing import Any, NoReturn, cast

import numpy as np

from voxmesh.schemas import Topology, get_topology
from voxmesh.schemas.errors import UserError


@dataclasses.dataclass
class Reconstruction:
    """Per-frame output for ``N`` frames. Frames without a usable face have ``valid`` False and
    NaN geometry; ``n_faces`` counts the faces the backend saw (2 means "at least two").

    Parametric backends may add per frame their identity (shape) coefficients ``identity``, and
    per track (set by :meth:`ReconstructionBackend.finish_track` only, never by ``reconstruct``)
    ``neutral``: the track's face with zero expression and jaw, in ``mesh``'s frame and units."""

    mesh: np.ndarray        # (N, V, 3) float32, the backend's head frame (head_frame)
    pose: np.ndarray        # (N, 4, 4) float32, head -> image similarity (crop pixels from reconstruct)
    lmk2d: np.ndarray       # (N, L, 2) float32, image pixels (crop pixels from reconstruct)
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


# The frame and units of a backend's mesh.npy unless it says otherwise (ReconstructionBackend.head_frame).
CANONICAL_HEAD_FRAME = ("the canonical head frame: x to the subject's left, y up, z out of the face, origin at the "
                        "centroid of the topology's stable vertices; centimetres")


class BackendContractError(UserError, TypeError):
    """A backend's output of the wrong type, shape or dtype: it would be wrong for every input, so
    the build stops with this one line instead of failing each input."""


def check_structure(name: str, topology: Topology, result: object, n_frames: int, finished: bool = False) -> None:
    """Raise :class:`BackendContractError` unless ``result``, backend ``name``'s output for
    ``n_frames`` frames, has the fields, shapes and dtypes of :class:`Reconstruction`.

    The output of :meth:`ReconstructionBackend.reconstruct` may be an earlier stage's (FLAME's is
    MediaPipe's 478 points, fitted per track in ``finish_track``): its frames and array kinds are
    checked. The output of ``finish_track`` (``finished``) is also checked against ``topology``."""
    def refuse(what: str) -> NoReturn:
        raise BackendContractError(f"backend {name}: {what}; check it with voxmesh.recon.testing.check_backend")

    if not isinstance(result, Reconstruction):
        refuse(f"{'finish_track' if finished else 'reconstruct'} returned {type(result).__name__}, not a Reconstruction")
    vertices, landmarks = (topology.n_vertices, topology.n_landmarks) if finished else (None, None)
    expected = {"mesh": (n_frames, vertices, 3), "pose": (n_frames, 4, 4), "lmk2d": (n_frames, landmarks, 2),
                "confidence": (n_frames,)}
    for field, shape in expected.items():
        array = getattr(result, field)
        if not (isinstance(array, np.ndarray) and array.dtype == np.float32 and array.ndim == len(shape)
                and all(want in (None, got) for want, got in zip(shape, array.shape))):
            got = f"{array.dtype}{array.shape}" if isinstance(array, np.ndarray) else type(array).__name__
            wanted = "(" + ", ".join("V" if d is None and field == "mesh" else "L" if d is None else str(d)
                                     for d in shape) + (",)" if len(shape) == 1 else ")")
            refuse(f"{field} is {got}, expected float32{wanted}" + (f" (topology {topology.name})" if finished else ""))
    if not isinstance(result.n_faces, np.ndarray) or result.n_faces.shape != (n_frames,):
        refuse(f"n_faces must be an array of shape ({n_frames},)")
    for field in ("coeffs", "identity"):
        array = getattr(result, field)
        if array is not None and not (isinstance(array, np.ndarray) and array.ndim == 2 and len(array) == n_frames
                                      and array.dtype == np.float32):
            refuse(f"{field} must be None or ({n_frames}, C) float32")
    if result.neutral is not None and not finished:
        refuse("reconstruct set neutral, which finish_track sets once per track")
    if result.neutral is not None and not (isinstance(result.neutral, np.ndarray) and result.neutral.dtype == np.float32
                                           and result.neutral.shape == (topology.n_vertices, 3)):
        refuse(f"neutral must be None or ({topology.n_vertices}, 3) float32")


def check_values(name: str, result: Reconstruction) -> None:
    """Raise ``ValueError`` naming backend ``name``'s first problem where its frames are valid (a
    face, finite mesh): a non-finite pose, landmark or confidence, a confidence outside [0, 1],
    a non-finite neutral face. Such values depend on the input: the build records that input's
    failure with this text (``internal_error``) and goes on."""
    valid = result.valid
    for field in ("pose", "lmk2d", "confidence"):
        bad = ~np.isfinite(getattr(result, field)[valid]).reshape(int(valid.sum()), -1).all(axis=1)
        if bad.any():
            raise ValueError(f"backend {name}: non-finite {field} on {int(bad.sum())} of the {int(valid.sum())} "
                             f"frames it counted as a face (n_faces 1, finite mesh)")
    confidence = result.confidence[valid]
    if ((confidence < 0) | (confidence > 1)).any():
        raise ValueError(f"backend {name}: confidence outside [0, 1] (from {confidence.min():g} to "
                         f"{confidence.max():g})")
    if result.neutral is not None and not np.isfinite(result.neutral).all():
        raise ValueError(f"backend {name}: non-finite neutral face")


def check_output(backend: ReconstructionBackend, result: object, n_frames: int, finished: bool = False) -> None:
    """:func:`check_structure` then :func:`check_values` of ``backend``'s output for ``n_frames``
    frames (``finished``: from ``finish_track``), as the build checks every batch and track."""
    check_structure(backend.name, backend.topology, result, n_frames, finished)
    check_values(backend.name, cast(Reconstruction, result))


class ReconstructionBackend(abc.ABC):
    """Subclass, set the class attributes, implement :meth:`reconstruct`, and register it."""

    name: str = ""
    topology_name: str = ""
    needs_gpu: bool = False  # shown by `voxmesh backends`; not enforced (a launcher often has no GPU, its workers do)
    description: str = ""
    head_frame: str = CANONICAL_HEAD_FRAME  # mesh.npy's frame and units, for dataset.json and the dataset card
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
        """A string that changes whenever the backend's output can change (model and code); read by
        the launcher before :meth:`setup`, so it must not need the loaded models. Recorded in
        ``dataset.json`` and every sample's ``backend_version``."""
        raise BackendContractError(f"backend {self.name}: no version; give its class a `version` property (a string "
                                   f"naming its code and model, e.g. 'mybackend-1.2+weights-v3')")

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
        """Forget tracking state; called before each new run of a face (and so between videos)."""

    @abc.abstractmethod
    def reconstruct(self, frames: np.ndarray) -> Reconstruction:
        """Reconstruct ``frames`` (N, H, W, 3) uint8 RGB crops, the next N frames of the current
        run; ``pose`` and ``lmk2d`` in the crops' pixels (the pipeline maps them to the source's
        with :meth:`Reconstruction.to_source`)."""

    def finish_track(self, track: Reconstruction) -> Reconstruction:
        """Called once per track (a run, cut into parts of at most ``max_track_frames``) with its
        frames' results, already in source pixels; returns them in the backend's topology. The
        place for per-track work such as fitting a shared shape, and the only place that sets the
        track's ``neutral`` face. The default returns ``track``."""
        return track

    def close(self) -> None:
        """Release models; called from ``DoFn.teardown``."""
