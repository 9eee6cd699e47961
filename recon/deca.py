"""The ``deca`` backend: DECA's coarse FLAME regressor (Feng et al., SIGGRAPH 2021) run per frame
on the pipeline's face crops, batched, on CUDA when available (encoder in bfloat16 autocast,
TF32 matmuls; FLAME decoding in float32), else CPU in float32.

Files (the user's own, never downloaded): DECA's released ``deca_model.tar`` (its ``E_flame``
entry, read with ``torch.load(weights_only=True)``) at ``$VOXMESH_DECA_CHECKPOINT``, and FLAME
converted by ``voxmesh convert-flame --landmarks landmark_embedding.npy`` at
``$VOXMESH_FLAME_MODEL`` (DECA's own FLAME 2020 and landmark embedding).

DECA's crop for a detector box (``decalib/datasets/datasets.py``, ``bbox2point`` type ``bbox``):
side ``int(1.25 * box size)``, centre moved down by 0.12 box sizes, resampled bilinearly to
224 x 224, RGB scaled to [0, 1], no mean/std. The box is the tracker's, which the pipeline's crop
holds at :data:`CROP_FACE_FRACTION` of its side.

Decoding (``decalib/deca.py``): code = shape 100, tex 50, exp 50, pose 6 (global, jaw axis-angle),
cam 3 (orthographic scale, tx, ty), light 27. ``mesh.npy``: FLAME with the shape, expression and
jaw, global rotation zero (pose removed, FLAME's head frame, metres); ``coeffs.npy``: [exp (50),
jaw (3)]; ``neutral.npy`` (per track): FLAME with the mean over the track's valid frames of DECA's
per-frame shape codes (DECA regresses the shape per frame; the track has one identity), zero
expression, zero jaw, no global rotation, in ``mesh.npy``'s frame and units; ``pose.npy``: the
head -> crop similarity of DECA's orthographic camera (``batch_orth_proj``, y flipped, pixels
``(p + 1) * 112``), depth ``-z`` on the same scale so the frame stays right-handed.
``lmk2d.npy``: the FLAME landmark embedding projected the same way. DECA has no face score:
confidence is 1 and face presence comes from the tracker.

Temporal smoothing (off by default): ``smooth_sigma`` > 0 filters ``mesh.npy`` and
``coeffs.npy`` along time with a Gaussian of that many frames (σ) within each run of valid frames
of a track; pose and landmarks stay per frame.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from voxmesh.schemas import register_topology, storage
from voxmesh.schemas.errors import ConfigError, MissingFileError
from voxmesh.schemas.weights import read_tensors

from .base import Reconstruction, ReconstructionBackend
from .checkpoint import check_state_dict
from .deca_net import DecaCoarseEncoder, split_code
from .fan3d import CROP_FACE_FRACTION
from .flame import FLAME_HEAD_FRAME, MODEL_ENV, flame_topology, landmark_topology_name
from .flame_model import FlameModel, rodrigues

CHECKPOINT_ENV = "VOXMESH_DECA_CHECKPOINT"
NETWORK = "DECA's coarse encoder E_flame (ResNet-50 + Linear 2048-1024-236; deca_model.tar)"
INPUT_SIZE = 224
BOX_SCALE = 1.25   # DECA's TestData default ``scale``
BOX_SHIFT = 0.12   # centre moved down by this many box sizes for a detector box
# Frames per forward pass. On a CPU a pass of 64 frames allocates ResNet-50 activations of a few GB
# and spends its time in page faults: bench/bench_deca_batches.py ran at 10.2 frames/s with passes
# of 64 and 28.2 with passes of 8 (same frames, one run); a GPU wants the large pass.
FORWARD_FRAMES = {"cpu": 8, "cuda": 64}


def load_encoder(path: str) -> DecaCoarseEncoder:
    """DECA's coarse encoder with the weights of ``path`` (the released ``deca_model.tar`` or a
    bare ``E_flame`` state dict). Raises ConfigError naming the first missing and unexpected key."""
    raw = read_tensors(path)
    state = raw.get("E_flame", raw)
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: 'E_flame' is a {type(state).__name__}, expected a dict of tensors ({NETWORK})")
    network = DecaCoarseEncoder()
    check_state_dict(path, state, network, NETWORK)
    network.load_state_dict(state, strict=False)
    return network.eval()


def crop_grid(height: int, width: int) -> tuple[torch.Tensor, tuple[float, float, float]]:
    """DECA's crop of a pipeline crop: the sampling grid (1, 224, 224, 2) for ``grid_sample``
    (``align_corners=True``) and ``(k, x0, y0)``: DECA pixel (u, v) is crop pixel (k u + x0, k v + y0)."""
    box = CROP_FACE_FRACTION * min(height, width)
    centre_x, centre_y = width / 2, height / 2 + BOX_SHIFT * box
    side = int(box * BOX_SCALE)
    k, x0, y0 = side / (INPUT_SIZE - 1), centre_x - side / 2, centre_y - side / 2
    steps = torch.arange(INPUT_SIZE, dtype=torch.float64) * k
    xs, ys = 2 * (x0 + steps) / (width - 1) - 1, 2 * (y0 + steps) / (height - 1) - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None].float()
    return grid, (k, x0, y0)


def camera_similarity(code: dict[str, torch.Tensor], root: torch.Tensor, crop: tuple[float, float, float]
                      ) -> torch.Tensor:
    """(B, 4, 4) head -> crop-pixel similarity: FLAME's global rotation about its root joint
    ``root`` (B, 3), DECA's orthographic camera, then DECA's crop back to the pipeline's crop."""
    rotation = rodrigues(code["pose"][:, :3].float())
    scale, shift = code["cam"][:, 0].float(), code["cam"][:, 1:3].float()
    flip = torch.tensor([1.0, -1.0, -1.0], device=root.device)
    k, x0, y0 = crop
    pixels = k * INPUT_SIZE / 2 * scale  # DECA's (p + 1) * 112, then the crop's k
    translation = root - torch.einsum("bij,bj->bi", rotation, root)
    translation = translation + torch.nn.functional.pad(shift, (0, 1))
    similarity = torch.zeros(len(scale), 4, 4, device=root.device)
    similarity[:, :3, :3] = pixels[:, None, None] * flip[:, None] * rotation
    similarity[:, :3, 3] = pixels[:, None] * flip * translation
    similarity[:, :3, 3] += torch.tensor([k * INPUT_SIZE / 2 + x0, k * INPUT_SIZE / 2 + y0, 0.0], device=root.device)
    similarity[:, 3, 3] = 1.0
    return similarity


def smooth_runs(values: np.ndarray, valid: np.ndarray, sigma: float) -> np.ndarray:
    """``values`` (T, ...) filtered along time with a Gaussian of ``sigma`` frames inside each run
    of consecutive ``valid`` frames (edges repeat the run's end values); invalid frames unchanged."""
    out = values.copy()
    edges = np.flatnonzero(np.diff(np.concatenate([[0], valid.astype(np.int8), [0]])))
    for start, end in zip(edges[::2], edges[1::2]):
        out[start:end] = gaussian_filter1d(values[start:end].astype(np.float64), sigma, axis=0, mode="nearest")
    return out.astype(values.dtype)


class DecaBackend(ReconstructionBackend):
    """DECA's coarse FLAME regressor per frame on the tracker's crops."""

    name = "deca"
    topology_name = landmark_topology_name(68)  # set again in setup from the model's landmark embedding
    head_frame = FLAME_HEAD_FRAME
    needs_gpu = False
    description = "DECA coarse FLAME regressor, 5023 vertices (torch; CUDA + bfloat16 when available)"
    required_files = (f"deca.checkpoint=URI or ${CHECKPOINT_ENV}: DECA's deca_model.tar",
                      f"deca.model=URI or ${MODEL_ENV}: FLAME converted by `voxmesh convert-flame --landmarks "
                      f"landmark_embedding.npy`")
    option_names = ("checkpoint", "model")
    frames_independent = True  # frame by frame; finish_track smooths its track alone

    def __init__(self, checkpoint_path: str | None = None, model_path: str | None = None, smooth_sigma: float = 0.0,
                 options: dict[str, str] | None = None):
        super().__init__(options)
        self.checkpoint_path = self.options.get("checkpoint") or checkpoint_path or os.environ.get(CHECKPOINT_ENV, "")
        self.model_path = self.options.get("model") or model_path or os.environ.get(MODEL_ENV, "")
        self.smooth_sigma = smooth_sigma
        self.device = "cpu"
        self.encoder: DecaCoarseEncoder | None = None
        self.model: FlameModel | None = None

    @property
    def version(self) -> str:
        return (f"deca-coarse-1+{os.path.basename(self.checkpoint_path)}+torch-{torch.__version__}"
                f"+smooth-{self.smooth_sigma:g}")

    @classmethod
    def unavailable_reason(cls, options: dict[str, str] | None = None) -> str | None:
        for key, env, what in (("checkpoint", CHECKPOINT_ENV, "DECA's deca_model.tar"),
                               ("model", MODEL_ENV, "a FLAME model converted with `voxmesh convert-flame`")):
            uri = (options or {}).get(key) or os.environ.get(env, "")
            where = f"--backend-option deca.{key}" if (options or {}).get(key) else env
            if not uri:
                return f"set {env} (or pass --backend-option deca.{key}=URI) to {what} (not redistributable, never downloaded)"
            if not storage.exists(uri):
                return f"{where}={uri}: no such file"
        return None

    def setup(self) -> None:
        if not self.checkpoint_path or not storage.exists(self.checkpoint_path):
            raise MissingFileError(f"no DECA checkpoint at {self.checkpoint_path!r}; set {CHECKPOINT_ENV} "
                                   f"or pass --backend-option deca.checkpoint=URI")
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        with storage.local_copy(self.checkpoint_path) as path:
            self.encoder = load_encoder(path).to(self.device)
        with storage.local_copy(self.model_path) as path:
            self.model = FlameModel.load(path).to(self.device)
        if self.model.n_shape < 100 or self.model.n_expression < 50:
            raise ConfigError(f"{self.model_path}: {self.model.n_shape} shape / {self.model.n_expression} expression "
                              f"components, DECA needs 100 / 50; convert FLAME 2020 with `voxmesh convert-flame`")
        n_landmarks = int(self.model.lmk_faces_idx.shape[0])
        self.topology_name = landmark_topology_name(n_landmarks)
        register_topology(flame_topology(self.model, self.topology_name, n_landmarks))

    def reconstruct(self, frames: np.ndarray) -> Reconstruction:
        step = FORWARD_FRAMES[self.device]
        parts = [self._decode(frames[i:i + step]) for i in range(0, len(frames), step)]
        mesh, pose, lmk2d, coeffs, identity = (np.concatenate(arrays) for arrays in zip(*parts))
        n_frames = len(frames)
        return Reconstruction(mesh=mesh, pose=pose, lmk2d=lmk2d, confidence=np.ones(n_frames, dtype=np.float32),
                              n_faces=np.ones(n_frames, dtype=np.int16), coeffs=coeffs, identity=identity)

    def _decode(self, frames: np.ndarray) -> tuple[np.ndarray, ...]:
        assert self.encoder is not None and self.model is not None, "call setup() first"
        model = self.model
        grid, crop = crop_grid(*frames.shape[1:3])
        with torch.inference_mode():
            pixels = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device).permute(0, 3, 1, 2).float() / 255
            images = torch.nn.functional.grid_sample(pixels, grid.to(self.device).expand(len(frames), -1, -1, -1),
                                                     mode="bilinear", padding_mode="zeros", align_corners=True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device == "cuda"):
                code = split_code(self.encoder(images).float())
            shape = torch.nn.functional.pad(code["shape"], (0, model.n_shape - 100))
            expression = torch.nn.functional.pad(code["exp"], (0, model.n_expression - 50))
            jaw = code["pose"][:, 3:]
            vertices = model(shape, expression, jaw)
            root = torch.einsum("v,bvc->bc", model.J_regressor[0], model.shaped(shape, expression))
            similarity = camera_similarity(code, root, crop)
            landmarks = model.landmarks(vertices)
            lmk2d = torch.einsum("bij,blj->bli", similarity[:, :2, :3], landmarks) + similarity[:, None, :2, 3]
            coeffs = torch.cat([code["exp"], jaw], dim=1)
        return tuple(t.float().cpu().numpy() for t in (vertices, similarity, lmk2d, coeffs, code["shape"]))

    def finish_track(self, track: Reconstruction) -> Reconstruction:
        """The track's neutral face (from its valid frames' shape codes), then the optional smoothing."""
        assert self.model is not None, "call setup() first"
        valid = track.valid
        if track.identity is not None and valid.any():
            track = dataclasses.replace(track, neutral=self.model.neutral(track.identity[valid]))
        if self.smooth_sigma <= 0 or track.coeffs is None:
            return track
        return dataclasses.replace(track, mesh=smooth_runs(track.mesh, valid, self.smooth_sigma),
                                   coeffs=smooth_runs(track.coeffs, valid, self.smooth_sigma))

    def close(self) -> None:
        self.encoder = self.model = None
