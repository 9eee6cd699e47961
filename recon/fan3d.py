"""The ``fan3d`` backend: face-alignment's 3D FAN (Bulat and Tzimiropoulos, "How far are we from
solving the 2D & 3D face alignment problem?", ICCV 2017), 68 landmarks in 3D per frame.

The networks (FAN-4 for the 2D heatmaps, ResNetDepth for the depth of each landmark) and their
pre- and post-processing are the ``face_alignment`` package's, run in eager mode (never
``torch.compile``), on CUDA when available, else CPU. Its face detector is not used: the pipeline
hands over crops of tracked faces, whose face box is known (:data:`CROP_FACE_FRACTION`).

Weights are never downloaded. They are the backend options ``fan`` and ``depth``
(``--backend-option fan3d.fan=URI --backend-option fan3d.depth=URI``, any Beam file system, copied
to the worker in :meth:`Fan3D.setup`), or else read locally, under the file names face-alignment
gives them, from ``$VOXMESH_FAN3D_DIR`` or torch hub's cache (``$TORCH_HOME/hub/checkpoints``,
where face-alignment itself would put them); always with ``torch.load(weights_only=True)``: a
checkpoint that holds anything but tensors and plain containers is refused, not unpickled.

Geometry: landmark ``x, y`` in crop pixels and FAN's depth on the same scale form the observation;
head pose is removed by a similarity fit of the stable landmarks (nose, eye corners) to the
``fan68`` template, as for MediaPipe. face-alignment does not document the direction of its depth
axis, so each frame's depth is oriented to put the nose tip nearer the camera than the two ends of
the jaw line, which holds for any face turned less than 90 degrees. Confidence is the mean of the
landmarks' heatmap peaks (FAN's own landmark scores), clipped to [0, 1].
"""

from __future__ import annotations

import os
import posixpath
from typing import Any
from urllib.parse import urlparse

import numpy as np
from scipy.spatial import Delaunay

from voxmesh.schemas import Topology, get_topology, storage
from voxmesh.schemas.errors import ConfigError, MissingFileError

from .base import Reconstruction, ReconstructionBackend
from .ibug68 import BROWS_68, EYES_68, JAW_68, MEDIAPIPE_68, MOUTH_68, NOSE_68, NOSE_TIP_68
from .pose import remove_pose

WEIGHTS_ENV = "VOXMESH_FAN3D_DIR"
TOPOLOGY = "fan68"
N_POINTS = 68
# Eye corners and the nose: the landmarks that move least with expression.
STABLE_IDX = np.concatenate([NOSE_68, [36, 39, 42, 45]])
JAW_ENDS = JAW_68[[0, -1]]
# The pipeline's crops are centred on the smoothed face box with a side of 1.8 box sides
# (pipelines.faces.TrackRules.crop_scale; a test keeps the two equal).
CROP_FACE_FRACTION = 1 / 1.8
# Frames per forward pass: the depth network's input is 18.6 MB a frame; a CPU pages large passes
# in and out, a GPU wants them large.
FORWARD_FRAMES = {"cpu": 8, "cuda": 32}
WEIGHT_KEYS = {"fan": "3DFAN-4", "depth": "depth"}  # keys of face_alignment.api.models_urls


def build_topology() -> Topology:
    """The ``fan68`` topology: the template is the ``mediapipe478`` template at the 68 iBUG
    points, triangulated in the frontal (x, y) plane. The shipped
    ``schemas/topologies/fan68.npz`` is this function's output (a test checks it)."""
    template = get_topology("mediapipe478").template[MEDIAPIPE_68].astype(np.float32)
    faces = np.sort(Delaunay(template[:, :2].astype(np.float64)).simplices, axis=1)
    faces = faces[np.lexsort(faces.T[::-1])]
    upper = np.concatenate([BROWS_68, NOSE_68[:4], EYES_68])
    return Topology(name=TOPOLOGY, template=template, faces=faces.astype(np.int32),
                    lip_idx=MOUTH_68.astype(np.int32), upper_face_idx=upper.astype(np.int32),
                    stable_idx=STABLE_IDX.astype(np.int32), n_landmarks=N_POINTS)


def weight_urls() -> dict[str, str]:
    from face_alignment.api import models_urls
    return {role: models_urls[key] for role, key in WEIGHT_KEYS.items()}


def weight_files() -> dict[str, str]:
    """The checkpoint file names face-alignment gives the weights: ``{"fan": ..., "depth": ...}``."""
    return {role: posixpath.basename(urlparse(url).path) for role, url in weight_urls().items()}


def weight_folders() -> list[str]:
    import torch
    folders = [os.environ[WEIGHTS_ENV]] if os.environ.get(WEIGHTS_ENV) else []
    return folders + [os.path.join(torch.hub.get_dir(), "checkpoints")]


def find_weights() -> dict[str, str] | None:
    """``{"fan": path, "depth": path}`` from the first folder that holds both, else None."""
    for folder in weight_folders():
        paths = {role: os.path.join(folder, name) for role, name in weight_files().items()}
        if all(os.path.isfile(path) for path in paths.values()):
            return paths
    return None


def load_state_dict(path: str) -> dict:
    """A checkpoint's tensors, read without unpickling arbitrary objects. face-alignment's depth
    checkpoint wraps them as ``{"state_dict": {"module.<name>": tensor}}``."""
    from voxmesh.schemas.weights import read_tensors
    raw = read_tensors(path)
    state = raw.get("state_dict", raw)
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: expected a dict of tensors, found {type(state).__name__}")
    return {name.removeprefix("module."): value for name, value in state.items()}


def orient_depth(points: np.ndarray) -> np.ndarray:
    """(N, 68, 3) landmarks with depth negated where needed so that depth grows away from the
    camera: the nose tip nearer than the two ends of the jaw line."""
    nearer = points[:, NOSE_TIP_68, 2] < points[:, JAW_ENDS, 2].mean(axis=1)
    return np.where(nearer[:, None, None], points, points * np.array([1.0, 1.0, -1.0]))


def landmark_targets(points: np.ndarray, resolution: int, device: str = "cpu") -> Any:
    """ResNetDepth's landmark input: for (N, 68, 2) points in ``resolution`` pixels, an (N, 68, R, R)
    float32 tensor on ``device`` whose maps each hold face-alignment's 13 x 13 Gaussian (sigma 2)
    at its point, on zero: bit for bit what ``face_alignment.utils.draw_gaussian`` draws, its index
    conventions included (its window is placed one pixel off the point in some positions near and
    away from the borders), for every point with both coordinates positive as face-alignment draws
    them. The maps are made where the network runs (on a GPU, 18 MB a frame never crosses the bus)."""
    import torch
    from face_alignment.utils import _GAUSS_KERNEL as kernel

    n_frames, n_points = points.shape[:2]
    flat = points.reshape(-1, 2)
    first = np.floor(flat - 6).astype(np.int64)  # draw_gaussian's ul and br: (x, y)
    last = np.floor(flat + 6).astype(np.int64)
    drawn = ((flat > 0).all(1) & (first <= resolution).all(1) & (last >= 1).all(1)).nonzero()[0]
    first, last = first[drawn], last[drawn]
    window_start, window_end = np.maximum(first, 1) - 1, np.minimum(last, resolution)  # image pixels drawn
    shift = np.where(first >= 1, first - 1, np.where(first <= -1, first + 1, 0))  # image pixel - kernel index
    offsets = np.arange(kernel.shape[0])
    x, y = shift[:, None, 0] + offsets, shift[:, None, 1] + offsets  # (M, 13) image columns and rows
    inside_x = (x >= window_start[:, None, 0]) & (x < window_end[:, None, 0])
    inside_y = (y >= window_start[:, None, 1]) & (y < window_end[:, None, 1])
    m, row, column = np.nonzero(inside_y[:, :, None] & inside_x[:, None, :])
    maps = torch.zeros((n_frames * n_points, resolution, resolution), dtype=torch.float32, device=device)
    where = [torch.from_numpy(index).to(device) for index in (drawn[m], y[m, row], x[m, column])]
    maps[where[0], where[1], where[2]] = torch.from_numpy(kernel[row, column]).to(device)
    return maps.reshape(n_frames, n_points, resolution, resolution)


class Fan3D(ReconstructionBackend):
    """face-alignment's 3D FAN on the pipeline's face crops; CUDA when available."""

    name = "fan3d"
    topology_name = TOPOLOGY
    needs_gpu = False
    description = "face-alignment 3D FAN, 68 points (torch; CUDA when available)"
    required_files = ("3DFAN4 and depth weights of face-alignment: fan3d.fan=URI and fan3d.depth=URI, "
                      f"or in ${WEIGHTS_ENV} or torch hub's checkpoints",)
    option_names = tuple(WEIGHT_KEYS)
    frames_independent = True  # frame by frame, no tracking state

    def __init__(self, flip_input: bool = True, options: dict[str, str] | None = None):
        super().__init__(options)
        self.flip_input = flip_input  # face-alignment's default: average with the mirrored image
        self.device = "cpu"
        self.fan: Any = None    # face_alignment's FAN once set up
        self.depth: Any = None  # face_alignment's ResNetDepth once set up
        self._files: dict[str, str] = {}

    @property
    def version(self) -> str:
        import face_alignment
        files = "+".join(storage.basename(path) for path in self._files.values())
        return f"fan3d-1+face_alignment-{face_alignment.__version__}+{files}+flip-{int(self.flip_input)}"

    @classmethod
    def unavailable_reason(cls, options: dict[str, str] | None = None) -> str | None:
        try:
            import face_alignment  # noqa: F401
        except ImportError as error:
            return (f"face_alignment cannot be imported ({error}); install it with "
                    f"`pip install --no-deps face-alignment==1.5.0 numba` (see the README)")
        if options:
            missing = [f"fan3d.{role}" for role in WEIGHT_KEYS if not options.get(role)]
            if missing:
                return f"pass --backend-option {' and '.join(missing)} too (both checkpoints travel together)"
            gone = [f"fan3d.{role}={uri}" for role, uri in options.items() if not storage.exists(uri)]
            return f"{gone[0]}: no such file" if gone else None
        if find_weights() is None:
            return (f"the weights {' and '.join(weight_files().values())} are not in "
                    f"{' or '.join(weight_folders())}; download {' and '.join(weight_urls().values())} "
                    f"into one of them (or set {WEIGHTS_ENV})")
        return None

    def setup(self) -> None:
        import torch
        from face_alignment.models import FAN, ResNetDepth

        files = {role: self.options[role] for role in WEIGHT_KEYS} if self.options else find_weights()
        if files is None:
            raise MissingFileError(str(self.unavailable_reason()))
        self._files = files
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.fan, self.depth = FAN(4), ResNetDepth()
        for network, role in ((self.fan, "fan"), (self.depth, "depth")):
            with storage.local_copy(files[role]) as path:
                try:
                    network.load_state_dict(load_state_dict(path))
                except RuntimeError as error:
                    raise ConfigError(f"{files[role]}: does not fit face-alignment's {role} network: {error}") from None
            network.to(self.device).eval()

    def reconstruct(self, frames: np.ndarray) -> Reconstruction:
        n_frames = len(frames)
        observed = np.empty((n_frames, N_POINTS, 3))
        scores = np.empty((n_frames, N_POINTS))
        step = FORWARD_FRAMES[self.device]
        for start in range(0, n_frames, step):
            chunk = slice(start, start + step)
            observed[chunk], scores[chunk] = self._landmarks(frames[chunk])
        topology = self.topology
        mesh, pose, _ = remove_pose(observed, topology.template, topology.stable_idx)
        peak = 2.0 if self.flip_input else 1.0  # flipping sums two heatmaps
        return Reconstruction(
            mesh=mesh.astype(np.float32), pose=pose.astype(np.float32),
            lmk2d=observed[:, :, :2].astype(np.float32),
            confidence=np.clip(scores.mean(axis=1) / peak, 0.0, 1.0).astype(np.float32),
            n_faces=np.ones(n_frames, dtype=np.int16))

    def _landmarks(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """FAN's (N, 68, 3) landmarks in crop pixels and their (N, 68) heatmap peaks."""
        import torch
        from face_alignment.utils import CROP_RESOLUTION, SCALE_FACTOR, crop, flip, get_preds_fromhm

        height, width = frames.shape[1:3]
        box = CROP_FACE_FRACTION * min(height, width)
        # face-alignment's framing of a detector box: centre raised by 0.12 box heights, scale =
        # (box width + height) / the detector's reference scale of 195 pixels.
        center = np.array([width / 2, height / 2 - 0.12 * box])
        scale = 2 * box / 195.0
        crops = np.stack([crop(frame, center, scale) for frame in frames])
        inputs = torch.from_numpy(crops.transpose(0, 3, 1, 2).astype(np.float32) / 255.0).to(self.device)
        with torch.inference_mode():
            heatmaps = self.fan(inputs)[-1]
            if self.flip_input:
                heatmaps = heatmaps + flip(self.fan(flip(inputs))[-1], is_label=True)
            heatmaps = heatmaps.float().cpu().numpy()
            points, points_image, peaks = get_preds_fromhm(heatmaps, center, scale)
            targets = landmark_targets(points * 4, CROP_RESOLUTION, self.device)
            depth_input = torch.cat([inputs, targets], dim=1)
            depth = self.depth(depth_input).float().cpu().numpy().reshape(len(frames), N_POINTS)
        depth *= SCALE_FACTOR * scale / CROP_RESOLUTION
        return orient_depth(np.concatenate([points_image, depth[:, :, None]], axis=2)), peaks

    def close(self) -> None:
        self.fan = self.depth = None
