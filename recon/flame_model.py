"""FLAME (Li et al., "Learning a model of facial shape and expression from 4D scans", SIGGRAPH
Asia 2017): linear blend skinning of a converted model file (``voxmesh convert-flame``), with the
global, neck and eye rotations zero (head pose removed)."""

from __future__ import annotations

import zipfile

import numpy as np
import torch

from voxmesh.schemas.errors import ConfigError, MissingFileError

FLAME_PARENTS = [-1, 0, 1, 1, 1]  # FLAME's joints: global, neck, jaw, left eye, right eye
JAW_JOINT = 2
JAW_FEATURES = slice(9, 18)  # pose-corrective columns of the jaw among joints 1-4 (9 each)


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

    v_template: torch.Tensor
    shapedirs: torch.Tensor
    exprdirs: torch.Tensor
    posedirs: torch.Tensor
    J_regressor: torch.Tensor
    lbs_weights: torch.Tensor
    lmk_bary_coords: torch.Tensor
    faces: torch.Tensor
    lmk_faces_idx: torch.Tensor

    def __init__(self, arrays: dict[str, np.ndarray]):
        super().__init__()
        for name in ("v_template", "shapedirs", "exprdirs", "posedirs", "J_regressor", "lbs_weights",
                     "lmk_bary_coords"):
            self.register_buffer(name, torch.as_tensor(np.asarray(arrays[name], dtype=np.float32)))
        self.register_buffer("faces", torch.as_tensor(np.asarray(arrays["faces"], dtype=np.int64)))
        self.register_buffer("lmk_faces_idx", torch.as_tensor(np.asarray(arrays["lmk_faces_idx"], dtype=np.int64)))
        self.parents = [int(p) for p in arrays["parents"]]  # FLAME_PARENTS (checked by _read)

    @classmethod
    def load(cls, path: str) -> FlameModel:
        return cls(cls._read(path, names=None))

    @classmethod
    def check(cls, path: str) -> None:
        """What :meth:`load` checks of ``path`` (a ``voxmesh convert-flame`` file with FLAME's
        joints), reading only the archive's index and the joint parents, not the model."""
        cls._read(path, names=("parents",))

    @staticmethod
    def _read(path: str, names: tuple[str, ...] | None) -> dict[str, np.ndarray]:
        """The arrays ``names`` of the model file (all with None), once it is checked."""
        try:
            with np.load(path, allow_pickle=False) as data:
                stored = set(data.files)
                arrays = {name: data[name] for name in (names or data.files) if name in stored}
        except FileNotFoundError:
            raise MissingFileError(f"no FLAME model at {path}; convert yours with `voxmesh convert-flame`") from None
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            raise ConfigError(f"{path}: not a FLAME model .npz ({error}); convert the official FLAME .pkl with "
                              f"`voxmesh convert-flame`") from None
        missing = {"v_template", "shapedirs", "exprdirs", "posedirs", "J_regressor", "parents", "lbs_weights",
                   "faces", "lmk_faces_idx", "lmk_bary_coords"} - stored
        if missing:
            raise ConfigError(f"{path} lacks {', '.join(sorted(missing))}; was it made by `voxmesh convert-flame "
                             f"--landmarks ...`?")
        if [int(p) for p in arrays["parents"]] != FLAME_PARENTS:
            raise ConfigError(f"{path}: joint parents {list(arrays['parents'])} are not FLAME's {FLAME_PARENTS}; "
                              f"convert a FLAME model with `voxmesh convert-flame`")
        return arrays

    @property
    def n_shape(self) -> int:
        return self.shapedirs.shape[-1]

    @property
    def n_expression(self) -> int:
        return self.exprdirs.shape[-1]

    def shaped(self, shape: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """The unposed vertices (B, V, 3): template + shape and expression blend shapes."""
        shaped = (self.v_template + torch.einsum("...s,vcs->...vc", shape, self.shapedirs)
                  + torch.einsum("bs,vcs->bvc", expression, self.exprdirs))
        return shaped.expand(expression.shape[0], -1, -1)

    def forward(self, shape: torch.Tensor, expression: torch.Tensor, jaw: torch.Tensor) -> torch.Tensor:
        """Vertices (B, V, 3) with zero global, neck and eye rotation; ``shape`` (S,) or (B, S),
        ``expression`` (B, E), ``jaw`` (B, 3) axis-angle.

        FLAME's linear blend skinning with only the jaw turned: the root, neck and eye transforms
        are the identity, so each vertex's blended transform is ``I + w_jaw (R - I)`` about the jaw
        joint, ``v = p + w_jaw (R - I)(p - J_jaw)``, with ``p`` the vertex after the shape,
        expression and pose blend shapes (only the jaw's pose features are non-zero) and ``J_jaw``
        regressed from the unposed vertices (skinning weights sum to one)."""
        shaped = self.shaped(shape, expression)
        bend = rodrigues(jaw) - torch.eye(3, dtype=shaped.dtype, device=shaped.device)
        posed = shaped + torch.einsum("bp,vcp->bvc", bend.reshape(-1, 9), self.posedirs[..., JAW_FEATURES])
        joint = torch.einsum("v,bvc->bc", self.J_regressor[JAW_JOINT], shaped)
        turned = torch.einsum("bij,bvj->bvi", bend, posed - joint[:, None])
        return posed + self.lbs_weights[:, JAW_JOINT, None] * turned

    def neutral(self, identity: np.ndarray) -> np.ndarray:
        """The neutral face (V, 3) float32 of per-frame shape vectors ``identity`` (T, S), zero-padded
        to the model's shape components: FLAME with their mean shape, zero expression, zero jaw and
        no global pose (the frame and units of :meth:`forward`). With the pose at rest FLAME is
        linear in the shape, so this is also the mean of the frames' own neutral faces."""
        mean = np.asarray(identity, dtype=np.float64).mean(axis=0)
        shape = torch.zeros(self.n_shape, dtype=self.v_template.dtype, device=self.v_template.device)
        shape[:len(mean)] = torch.as_tensor(mean, dtype=shape.dtype)
        zero = torch.zeros(1, self.n_expression, dtype=shape.dtype, device=shape.device)
        with torch.no_grad():
            face = self(shape, zero, torch.zeros(1, 3, dtype=shape.dtype, device=shape.device))[0]
        return face.cpu().numpy().astype(np.float32)

    def landmarks(self, vertices: torch.Tensor) -> torch.Tensor:
        """(B, L, 3) landmarks by barycentric interpolation on the embedding's faces."""
        corners = vertices[:, self.faces[self.lmk_faces_idx]]  # (B, L, 3 corners, 3)
        return torch.einsum("blkc,lk->blc", corners, self.lmk_bary_coords)
