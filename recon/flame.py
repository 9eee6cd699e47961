"""The ``flame`` backend: FLAME (Li et al., SIGGRAPH Asia 2017) fitted to the MediaPipe stage's
3D landmarks, batched over all frames of a track in torch (CUDA when available, else CPU).

Per track: one shape vector; per frame: expression, jaw rotation and a similarity (scale shared)
from the FLAME head frame to MediaPipe's canonical head frame; a temporal smoothness prior on
expression and jaw. The model is the user's own file (FLAME's licence forbids redistribution),
converted by ``voxmesh convert-flame`` to a plain ``.npz`` (it holds the landmark embedding too);
its URI is the backend option ``model`` (``--backend-option flame.model=s3://.../flame.npz``, any
Beam file system, copied to the worker in :meth:`FlameBackend.setup`), or locally the path in
``$VOXMESH_FLAME_MODEL``.

Outputs: ``mesh.npy`` FLAME vertices with global pose removed (FLAME's head frame, metres),
``coeffs.npy`` [expression, jaw axis-angle], ``pose.npy`` = MediaPipe head->image pose composed
with the fitted FLAME->MediaPipe similarity.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch

from voxmesh.schemas import Topology, register_topology, storage
from voxmesh.schemas.errors import ConfigError, MissingFileError

from .base import Reconstruction, ReconstructionBackend
from .ibug68 import MEDIAPIPE_68, MOUTH_68, NOSE_TIP_68
from .mediapipe_mesh import N_POINTS, MediaPipeFaceMesh

MODEL_ENV = "VOXMESH_FLAME_MODEL"
TOPOLOGY = "flame5023"


def rodrigues(axis_angle: torch.Tensor) -> torch.Tensor:
    """Axis-angle (..., 3) -> rotation matrices (..., 3, 3)."""
    angle = torch.linalg.norm(axis_angle + 1e-12, dim=-1, keepdim=True)
    axis = axis_angle / angle
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*axis.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device).expand_as(skew)
    sin, cos = torch.sin(angle)[..., None], torch.cos(angle)[..., None]
    return eye + sin * skew + (1 - cos) * skew @ skew


class FlameModel(torch.nn.Module):
    """FLAME's linear blend skinning, from the arrays of a converted ``.npz``."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        super().__init__()
        for name in ("v_template", "shapedirs", "exprdirs", "posedirs", "J_regressor", "lbs_weights",
                     "lmk_bary_coords"):
            self.register_buffer(name, torch.as_tensor(np.asarray(arrays[name], dtype=np.float32)))
        self.register_buffer("faces", torch.as_tensor(np.asarray(arrays["faces"], dtype=np.int64)))
        self.register_buffer("lmk_faces_idx", torch.as_tensor(np.asarray(arrays["lmk_faces_idx"], dtype=np.int64)))
        self.parents = [int(p) for p in arrays["parents"]]

    @classmethod
    def load(cls, path: str) -> FlameModel:
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except FileNotFoundError:
            raise MissingFileError(f"no FLAME model at {path}; convert yours with `voxmesh convert-flame`") from None
        missing = {"v_template", "shapedirs", "exprdirs", "posedirs", "J_regressor", "parents", "lbs_weights",
                   "faces", "lmk_faces_idx", "lmk_bary_coords"} - set(arrays)
        if missing:
            raise ConfigError(f"{path} lacks {', '.join(sorted(missing))}; was it made by `voxmesh convert-flame "
                             f"--landmarks ...`?")
        return cls(arrays)

    @property
    def n_shape(self) -> int:
        return self.shapedirs.shape[-1]

    @property
    def n_expression(self) -> int:
        return self.exprdirs.shape[-1]

    def forward(self, shape: torch.Tensor, expression: torch.Tensor, jaw: torch.Tensor) -> torch.Tensor:
        """Vertices (B, V, 3) with zero global, neck and eye rotation; ``shape`` (S,) or (B, S),
        ``expression`` (B, E), ``jaw`` (B, 3) axis-angle."""
        batch = expression.shape[0]
        shaped = (self.v_template + torch.einsum("...s,vcs->...vc", shape, self.shapedirs)
                  + torch.einsum("bs,vcs->bvc", expression, self.exprdirs))
        shaped = shaped.expand(batch, -1, -1)
        joints = torch.einsum("jv,bvc->bjc", self.J_regressor, shaped)
        n_joints = joints.shape[1]
        pose = torch.zeros(batch, n_joints, 3, dtype=shaped.dtype, device=shaped.device)
        pose[:, 2] = jaw  # FLAME's joints: global, neck, jaw, left eye, right eye
        rotations = rodrigues(pose)
        eye = torch.eye(3, dtype=shaped.dtype, device=shaped.device)
        features = (rotations[:, 1:] - eye).reshape(batch, -1)
        posed = shaped + torch.einsum("bp,vcp->bvc", features, self.posedirs)
        transforms = []
        for j in range(n_joints):
            local = torch.eye(4, dtype=shaped.dtype, device=shaped.device).repeat(batch, 1, 1)
            local[:, :3, :3] = rotations[:, j]
            parent = self.parents[j]
            local[:, :3, 3] = joints[:, j] - (joints[:, parent] if parent >= 0 else 0)
            transforms.append(local if parent < 0 else transforms[parent] @ local)
        world = torch.stack(transforms, dim=1)
        rest = torch.einsum("bjxy,bjy->bjx", world[:, :, :3, :3], joints)
        world = world.clone()
        world[:, :, :3, 3] = world[:, :, :3, 3] - rest
        blended = torch.einsum("vj,bjxy->bvxy", self.lbs_weights, world)
        return torch.einsum("bvxy,bvy->bvx", blended[:, :, :3, :3], posed) + blended[:, :, :3, 3]

    def landmarks(self, vertices: torch.Tensor) -> torch.Tensor:
        """(B, L, 3) landmarks by barycentric interpolation on the embedding's faces."""
        corners = vertices[:, self.faces[self.lmk_faces_idx]]  # (B, L, 3 corners, 3)
        return torch.einsum("blkc,lk->blc", corners, self.lmk_bary_coords)


@dataclasses.dataclass
class FlameFit:
    shape: np.ndarray       # (S,)
    expression: np.ndarray  # (T, E)
    jaw: np.ndarray         # (T, 3)
    similarity: np.ndarray  # (T, 4, 4) FLAME head frame -> target frame
    vertices: np.ndarray    # (T, V, 3) FLAME head frame
    landmark_rmse: float    # in target units


@dataclasses.dataclass(frozen=True)
class FitSettings:
    steps: int = 100              # L-BFGS iterations (each up to 20 function evaluations)
    shape_weight: float = 1e-5
    expression_weight: float = 1e-5
    smoothness_weight: float = 1e-3


def fit_flame(model: FlameModel, targets: np.ndarray, settings: FitSettings = FitSettings()) -> FlameFit:
    """Fit FLAME to landmark tracks ``targets`` (T, L, 3) (in any frame and unit: the similarity
    absorbs them). Minimises mean squared landmark error + L2 priors on shape and expression +
    squared frame-to-frame change of expression and jaw, with L-BFGS over all frames at once."""
    device = model.v_template.device
    target = torch.as_tensor(targets, dtype=torch.float32, device=device)
    n_frames = target.shape[0]
    with torch.no_grad():
        neutral = model.landmarks(model(torch.zeros(model.n_shape, device=device),
                                        torch.zeros(1, model.n_expression, device=device),
                                        torch.zeros(1, 3, device=device)))[0]
    init = [_umeyama_torch(neutral, target[t]) for t in range(n_frames)]
    log_scale = torch.tensor(float(np.log(np.mean([s for s, _, _ in init]))), device=device, requires_grad=True)
    rotation = torch.stack([_axis_angle(r) for _, r, _ in init]).requires_grad_(True)
    translation = torch.stack([t for _, _, t in init]).requires_grad_(True)
    shape = torch.zeros(model.n_shape, device=device, requires_grad=True)
    expression = torch.zeros(n_frames, model.n_expression, device=device, requires_grad=True)
    jaw = torch.zeros(n_frames, 3, device=device, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_scale, rotation, translation, shape, expression, jaw],
                                  max_iter=settings.steps, line_search_fn="strong_wolfe", tolerance_grad=1e-9,
                                  tolerance_change=1e-12)
    spread = float(target.std())

    def predicted() -> tuple[torch.Tensor, torch.Tensor]:
        vertices = model(shape, expression, jaw)
        landmarks = model.landmarks(vertices)
        moved = torch.exp(log_scale) * torch.einsum("tij,tlj->tli", rodrigues(rotation), landmarks)
        return vertices, moved + translation[:, None]

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        _, landmarks = predicted()
        loss = ((landmarks - target) ** 2).sum(-1).mean() / spread ** 2
        loss = loss + settings.shape_weight * shape.pow(2).sum() + settings.expression_weight * expression.pow(2).sum(-1).mean()
        if n_frames > 1:
            loss = loss + settings.smoothness_weight * ((expression[1:] - expression[:-1]).pow(2).sum(-1).mean()
                                                        + (jaw[1:] - jaw[:-1]).pow(2).sum(-1).mean())
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        vertices, landmarks = predicted()
        similarity = torch.zeros(n_frames, 4, 4, device=device)
        similarity[:, :3, :3] = torch.exp(log_scale) * rodrigues(rotation)
        similarity[:, :3, 3] = translation
        similarity[:, 3, 3] = 1
        rmse = float(((landmarks - target) ** 2).sum(-1).mean().sqrt())
    return FlameFit(shape.detach().cpu().numpy(), expression.detach().cpu().numpy(), jaw.detach().cpu().numpy(),
                    similarity.cpu().numpy(), vertices.cpu().numpy(), rmse)


def _umeyama_torch(source: torch.Tensor, target: torch.Tensor):
    from .pose import umeyama
    scale, rotation, translation = umeyama(source.cpu().double().numpy(), target.cpu().double().numpy())
    device = source.device
    return scale, torch.as_tensor(rotation, dtype=torch.float32, device=device), \
        torch.as_tensor(translation, dtype=torch.float32, device=device)


def _axis_angle(rotation: torch.Tensor) -> torch.Tensor:
    from scipy.spatial.transform import Rotation
    return torch.as_tensor(Rotation.from_matrix(rotation.cpu().double().numpy()).as_rotvec(), dtype=torch.float32,
                           device=rotation.device)


def flame_topology(model: FlameModel, n_landmarks: int = N_POINTS) -> Topology:
    """The ``flame5023`` topology of a loaded model: lips are the template vertices nearest to the
    mouth landmarks (48-67), the upper face those above the nose tip; stable vertices are those
    whose nearest landmark is a brow, nose or eye landmark."""
    template = model.v_template.cpu().numpy()
    with torch.no_grad():
        landmarks = model.landmarks(model.v_template[None])[0].cpu().numpy()
    offset = 68 - len(landmarks)  # the static 51-point embedding starts at landmark 17
    nearest = np.argmin(((template[:, None] - landmarks[None]) ** 2).sum(-1), axis=1) + offset
    distance = np.sqrt(((template - landmarks[nearest - offset]) ** 2).sum(-1))
    radius = np.median(np.linalg.norm(np.diff(landmarks, axis=0), axis=1))
    lips = np.flatnonzero(np.isin(nearest, MOUTH_68) & (distance < radius))
    upper = np.flatnonzero(template[:, 1] > landmarks[NOSE_TIP_68 - offset, 1])
    stable = np.flatnonzero((nearest >= 17) & (nearest < 48) & (distance < radius))
    return Topology(name=TOPOLOGY, template=template, faces=model.faces.cpu().numpy(), lip_idx=lips,
                    upper_face_idx=upper, stable_idx=stable, n_landmarks=n_landmarks)


def register_flame_topology_from_environment() -> None:
    """Register the ``flame5023`` topology from ``$VOXMESH_FLAME_MODEL`` when it is set (reading
    a FLAME dataset needs the user's model, which may not be redistributed)."""
    if os.environ.get(MODEL_ENV):
        register_topology(flame_topology(FlameModel.load(os.environ[MODEL_ENV])))


class FlameBackend(ReconstructionBackend):
    """FLAME fitted per track to MediaPipe's landmarks (the MediaPipe stage runs inside)."""

    name = "flame"
    topology_name = TOPOLOGY
    needs_gpu = False
    description = "FLAME 5023 fitted to MediaPipe landmarks per track (torch; CUDA when available)"
    required_files = (f"flame.model=URI or ${MODEL_ENV}: a FLAME model converted by `voxmesh convert-flame`",)
    option_names = ("model",)

    def __init__(self, model_path: str | None = None, settings: FitSettings = FitSettings(),
                 options: dict[str, str] | None = None):
        super().__init__(options)
        self.model_path = self.options.get("model") or model_path or os.environ.get(MODEL_ENV, "")
        self.settings = settings
        self.landmarker = MediaPipeFaceMesh()
        self.model: FlameModel | None = None

    @property
    def version(self) -> str:
        return f"flame-fit-1+{self.landmarker.version}+torch-{torch.__version__}"

    @classmethod
    def unavailable_reason(cls, options: dict[str, str] | None = None) -> str | None:
        uri = (options or {}).get("model") or os.environ.get(MODEL_ENV, "")
        where = "--backend-option flame.model" if (options or {}).get("model") else MODEL_ENV
        if not uri:
            return (f"set {MODEL_ENV} (or pass --backend-option flame.model=URI) to a FLAME model converted "
                    f"with `voxmesh convert-flame` (FLAME is not redistributable)")
        if not storage.exists(uri):
            return f"{where}={uri}: no such file"
        return MediaPipeFaceMesh.unavailable_reason()

    def setup(self) -> None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        with storage.local_copy(self.model_path) as path:
            self.model = FlameModel.load(path).to(device)
        register_topology(flame_topology(self.model))
        self.landmarker.setup()

    def reset(self) -> None:
        self.landmarker.reset()

    def reconstruct(self, frames: np.ndarray) -> Reconstruction:
        """MediaPipe results for the chunk; the FLAME fit happens per track in :meth:`finish_track`."""
        return self.landmarker.reconstruct(frames)

    def finish_track(self, track: Reconstruction) -> Reconstruction:
        valid = track.valid
        n_frames, n_vertices = len(valid), self.model.v_template.shape[0]
        mesh = np.full((n_frames, n_vertices, 3), np.nan, dtype=np.float32)
        pose = np.full((n_frames, 4, 4), np.nan, dtype=np.float32)
        coeffs = np.full((n_frames, self.model.n_expression + 3), np.nan, dtype=np.float32)
        if valid.any():
            embedded = MEDIAPIPE_68[68 - self.model.lmk_faces_idx.shape[0]:]
            fit = fit_flame(self.model, track.mesh[valid][:, embedded], self.settings)
            mesh[valid] = fit.vertices
            pose[valid] = track.pose[valid] @ fit.similarity
            coeffs[valid] = np.concatenate([fit.expression, fit.jaw], axis=1)
        return dataclasses.replace(track, mesh=mesh, pose=pose, coeffs=coeffs)

    def close(self) -> None:
        self.landmarker.close()
