"""The ``flame`` backend: FLAME (Li et al., SIGGRAPH Asia 2017) fitted to the MediaPipe stage's
3D landmarks, batched over all frames of a track in torch (CUDA when available, else CPU).

Per track: one shape vector; per frame: expression, jaw rotation and a similarity (scale shared)
from the FLAME head frame to MediaPipe's canonical head frame; a temporal smoothness prior on
expression and jaw (the solver: :mod:`voxmesh.recon.flame_fit`). The model is the user's own file
(FLAME's licence forbids redistribution), converted by ``voxmesh convert-flame`` to a plain
``.npz``; its URI is the backend option ``model`` (``--backend-option flame.model=s3://.../flame.npz``,
any Beam file system, copied to the worker in :meth:`FlameBackend.setup`), or locally the path in
``$VOXMESH_FLAME_MODEL``.

Landmarks: FLAME's MediaPipe embedding (``mediapipe_landmark_embedding.npz``, distributed with
FLAME-based trackers: ``lmk_face_idx`` (105,), ``lmk_b_coords`` (105, 3), ``landmark_indices``
(105,) MediaPipe indices) when the backend option ``embedding`` or ``$VOXMESH_FLAME_MEDIAPIPE_EMBEDDING``
names it; otherwise the model file's own 51/68-point iBUG embedding matched to MediaPipe through
:data:`MEDIAPIPE_68`. The backend's version names the one used (``mp105`` or ``ibug``).

Outputs: ``mesh.npy`` FLAME vertices with global pose removed (FLAME's head frame, metres),
``coeffs.npy`` [expression, jaw axis-angle], ``pose.npy`` = MediaPipe head->image pose composed
with the fitted FLAME->MediaPipe similarity, ``neutral.npy`` (per track) FLAME with the fitted
shape, zero expression, zero jaw and no global pose (same frame and units as ``mesh.npy``; a track
fitted in several chunks has one shape per chunk: their mean over the track's frames).
"""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np
import torch

from voxmesh.schemas import Topology, register_topology, storage
from voxmesh.schemas.errors import ConfigError, MissingFileError, UserError

from .base import Reconstruction, ReconstructionBackend
from .flame_fit import FitSettings, fit_flame
from .flame_model import FlameModel
from .ibug68 import BROWS_68, MEDIAPIPE_68, MOUTH_68, NOSE_TIP_68
from .mediapipe_mesh import N_POINTS, MediaPipeFaceMesh

__all__ = ["FitSettings", "FlameBackend", "FlameModel", "LandmarkEmbedding", "fit_flame", "flame_topology"]

log = logging.getLogger(__name__)

MODEL_ENV = "VOXMESH_FLAME_MODEL"
EMBEDDING_ENV = "VOXMESH_FLAME_MEDIAPIPE_EMBEDDING"
TOPOLOGY = "flame5023"


def landmark_topology_name(n_landmarks: int) -> str:
    """The name of the FLAME topology whose ``lmk2d.npy`` holds the model's own ``n_landmarks``
    embedded landmarks (the regressor backends; the fitter's ``flame5023`` holds MediaPipe's)."""
    return f"{TOPOLOGY}_lmk{n_landmarks}"


def flame_topology(model: FlameModel, name: str = TOPOLOGY, n_landmarks: int = N_POINTS) -> Topology:
    """The FLAME topology ``name`` of a loaded model (``lmk2d.npy`` of ``n_landmarks``): lips are
    the template vertices nearest to the mouth landmarks (48-67); stable vertices are those whose
    nearest landmark is a brow, nose or eye landmark. The upper face (FDD) is the face above the
    nose tip that the fit can move: not the eyeballs (skinned mostly to FLAME's eye joints, which
    the fit keeps at rest), not the scalp (more than one brow-to-nose-tip height above the brows,
    or that far behind the outer eye corners), not the neck (below the nose tip)."""
    template = model.v_template.cpu().numpy()
    with torch.no_grad():
        landmarks = model.landmarks(model.v_template[None])[0].cpu().numpy()
    offset = 68 - len(landmarks)  # the static 51-point embedding starts at landmark 17
    nearest = np.argmin(((template[:, None] - landmarks[None]) ** 2).sum(-1), axis=1) + offset
    distance = np.sqrt(((template - landmarks[nearest - offset]) ** 2).sum(-1))
    radius = np.median(np.linalg.norm(np.diff(landmarks, axis=0), axis=1))
    lips = np.flatnonzero(np.isin(nearest, MOUTH_68) & (distance < radius))
    nose_tip = landmarks[NOSE_TIP_68 - offset]
    brow_height = landmarks[BROWS_68 - offset, 1].mean()
    reach = brow_height - nose_tip[1]
    eye_corners_depth = landmarks[[36 - offset, 45 - offset], 2].mean()
    eyeballs = model.lbs_weights[:, 3:].sum(dim=1).cpu().numpy() > 0.5  # FLAME's joints 3, 4: the eyes
    above_nose = template[:, 1] > nose_tip[1]
    upper = np.flatnonzero(above_nose & (template[:, 1] < brow_height + reach)
                           & (template[:, 2] > eye_corners_depth - reach) & ~eyeballs)
    if upper.size == 0:  # landmarks not laid out like a face: keep FDD defined, and say so
        log.warning("%s: no vertex of the upper face between the nose tip and the brows; FDD uses every vertex "
                    "above the nose tip (is the model's landmark embedding FLAME's?)", name)
        upper = np.flatnonzero(above_nose)
    stable = np.flatnonzero((nearest >= 17) & (nearest < 48) & (distance < radius))
    return Topology(name=name, template=template, faces=model.faces.cpu().numpy(), lip_idx=lips,
                    upper_face_idx=upper, stable_idx=stable, n_landmarks=n_landmarks)


def register_flame_topology_from_environment() -> None:
    """Register the FLAME topologies (``flame5023`` and ``flame5023_lmk<L>``) from
    ``$VOXMESH_FLAME_MODEL`` when it is set (reading a FLAME dataset needs the user's model, which
    may not be redistributed)."""
    if os.environ.get(MODEL_ENV):
        model = FlameModel.load(os.environ[MODEL_ENV])
        register_topology(flame_topology(model))
        n_landmarks = int(model.lmk_faces_idx.shape[0])
        register_topology(flame_topology(model, landmark_topology_name(n_landmarks), n_landmarks))


@dataclasses.dataclass(frozen=True)
class LandmarkEmbedding:
    """FLAME landmarks (triangles ``faces_idx`` (L,), barycentric ``bary`` (L, 3)) and the
    MediaPipe vertex ``mediapipe_idx`` (L,) each one corresponds to."""

    name: str
    faces_idx: np.ndarray
    bary: np.ndarray
    mediapipe_idx: np.ndarray

    @classmethod
    def of_model(cls, model: FlameModel) -> LandmarkEmbedding:
        """The model file's static iBUG embedding (51 points from landmark 17, or 68)."""
        n_landmarks = int(model.lmk_faces_idx.shape[0])
        return cls(f"ibug{n_landmarks}", model.lmk_faces_idx.cpu().numpy(), model.lmk_bary_coords.cpu().numpy(),
                   MEDIAPIPE_68[68 - n_landmarks:])

    @classmethod
    def load_mediapipe(cls, path: str) -> LandmarkEmbedding:
        """FLAME's ``mediapipe_landmark_embedding.npz`` (read without pickles)."""
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in ("lmk_face_idx", "lmk_b_coords", "landmark_indices")}
        except FileNotFoundError:
            raise MissingFileError(f"no MediaPipe landmark embedding at {path}; unset {EMBEDDING_ENV} to use the "
                                   f"model's own landmarks") from None
        except (KeyError, ValueError) as error:
            raise ConfigError(f"{path}: not FLAME's mediapipe_landmark_embedding.npz (lmk_face_idx, lmk_b_coords, "
                              f"landmark_indices as plain arrays): {error}") from None
        faces = arrays["lmk_face_idx"].reshape(-1).astype(np.int64)
        return cls(f"mp{len(faces)}", faces, arrays["lmk_b_coords"].reshape(-1, 3).astype(np.float32),
                   arrays["landmark_indices"].reshape(-1).astype(np.int64))


# mesh.npy's frame and units for the backends that decode FLAME (FLAME's model space, no global rotation)
FLAME_HEAD_FRAME = ("FLAME's head frame: x to the subject's left, y up, z out of the face, origin at the origin of "
                    "FLAME's model space; metres")


class FlameBackend(ReconstructionBackend):
    """FLAME fitted per track to MediaPipe's landmarks (the MediaPipe stage runs inside)."""

    name = "flame"
    topology_name = TOPOLOGY
    head_frame = FLAME_HEAD_FRAME
    needs_gpu = False
    description = "FLAME 5023 fitted to MediaPipe landmarks per track (torch; CUDA when available)"
    required_files = (f"flame.model=URI or ${MODEL_ENV}: a FLAME model converted by `voxmesh convert-flame`",)
    option_names = ("model", "embedding")

    def __init__(self, model_path: str | None = None, settings: FitSettings = FitSettings(),
                 embedding_path: str | None = None, options: dict[str, str] | None = None):
        super().__init__(options)
        self.model_path = self.options.get("model") or model_path or os.environ.get(MODEL_ENV, "")
        self.embedding_path = self.options.get("embedding") or embedding_path or os.environ.get(EMBEDDING_ENV, "")
        self.settings = settings
        self.landmarker = MediaPipeFaceMesh()
        self.model: FlameModel | None = None
        self.embedding: LandmarkEmbedding | None = None

    @property
    def version(self) -> str:
        landmarks = "mp105" if self.embedding_path else "ibug"  # which embedding the fit uses
        return f"flame-fit-2+{landmarks}+{self.landmarker.version}+torch-{torch.__version__}"

    @classmethod
    def unavailable_reason(cls, options: dict[str, str] | None = None) -> str | None:
        uri = (options or {}).get("model") or os.environ.get(MODEL_ENV, "")
        where = "--backend-option flame.model" if (options or {}).get("model") else MODEL_ENV
        if not uri:
            return (f"set {MODEL_ENV} (or pass --backend-option flame.model=URI) to a FLAME model converted "
                    f"with `voxmesh convert-flame` (FLAME is not redistributable)")
        if not storage.exists(uri):
            return f"{where}={uri}: no such file"
        if not storage.is_remote(uri):  # a local model is checked here, so that a wrong file stops the launcher
            try:
                FlameModel.check(uri)
            except UserError as error:
                return f"{where}: {error}"
        return MediaPipeFaceMesh.unavailable_reason()

    def setup(self) -> None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        with storage.local_copy(self.model_path) as path:
            self.model = FlameModel.load(path).to(device)
        register_topology(flame_topology(self.model))
        if self.embedding_path:
            with storage.local_copy(self.embedding_path) as path:
                self.embedding = LandmarkEmbedding.load_mediapipe(path)
        else:
            self.embedding = LandmarkEmbedding.of_model(self.model)
        self.landmarker.setup()

    def reset(self) -> None:
        self.landmarker.reset()

    def reconstruct(self, frames: np.ndarray) -> Reconstruction:
        """MediaPipe results for the chunk; the FLAME fit happens per track in :meth:`finish_track`."""
        return self.landmarker.reconstruct(frames)

    def finish_track(self, track: Reconstruction) -> Reconstruction:
        assert self.model is not None and self.embedding is not None, "call setup() first"
        valid = track.valid
        n_frames, n_vertices = len(valid), self.model.v_template.shape[0]
        mesh = np.full((n_frames, n_vertices, 3), np.nan, dtype=np.float32)
        pose = np.full((n_frames, 4, 4), np.nan, dtype=np.float32)
        coeffs = np.full((n_frames, self.model.n_expression + 3), np.nan, dtype=np.float32)
        identity = np.full((n_frames, self.model.n_shape), np.nan, dtype=np.float32)
        neutral = None
        if valid.any():
            embedding = self.embedding
            fit = fit_flame(self.model, track.mesh[valid][:, embedding.mediapipe_idx], self.settings,
                            embedding.faces_idx, embedding.bary)
            mesh[valid] = fit.vertices
            pose[valid] = track.pose[valid] @ fit.similarity
            coeffs[valid] = np.concatenate([fit.expression, fit.jaw], axis=1)
            identity[valid] = fit.identity
            neutral = self.model.neutral(fit.identity)
        return dataclasses.replace(track, mesh=mesh, pose=pose, coeffs=coeffs, identity=identity, neutral=neutral)

    def close(self) -> None:
        self.landmarker.close()
