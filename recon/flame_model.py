"""FLAME (Li et al., "Learning a model of facial shape and expression from 4D scans", SIGGRAPH
Asia 2017): linear blend skinning of a converted model file (``voxmesh convert-flame``), with the
global, neck and eye rotations zero (head pose removed)."""

from __future__ import annotations

import numpy as np
import torch

from voxmesh.schemas.errors import ConfigError, MissingFileError


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

    def shaped(self, shape: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """The unposed vertices (B, V, 3): template + shape and expression blend shapes."""
        shaped = (self.v_template + torch.einsum("...s,vcs->...vc", shape, self.shapedirs)
                  + torch.einsum("bs,vcs->bvc", expression, self.exprdirs))
        return shaped.expand(expression.shape[0], -1, -1)

    def forward(self, shape: torch.Tensor, expression: torch.Tensor, jaw: torch.Tensor) -> torch.Tensor:
        """Vertices (B, V, 3) with zero global, neck and eye rotation; ``shape`` (S,) or (B, S),
        ``expression`` (B, E), ``jaw`` (B, 3) axis-angle."""
        batch = expression.shape[0]
        shaped = self.shaped(shape, expression)
        joints = torch.einsum("jv,bvc->bjc", self.J_regressor, shaped)
        n_joints = joints.shape[1]
        pose = torch.zeros(batch, n_joints, 3, dtype=shaped.dtype, device=shaped.device)
        pose[:, 2] = jaw  # FLAME's joints: global, neck, jaw, left eye, right eye
        rotations = rodrigues(pose)
        eye = torch.eye(3, dtype=shaped.dtype, device=shaped.device)
        features = (rotations[:, 1:] - eye).reshape(batch, -1)
        posed = shaped + torch.einsum("bp,vcp->bvc", features, self.posedirs)
        transforms: list[torch.Tensor] = []
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
