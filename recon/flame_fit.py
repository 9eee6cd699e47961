"""Fitting FLAME to 3D landmark tracks, fast enough to keep up with MediaPipe on one CPU core.

Per chunk of a track: one shape vector; per frame: expression, jaw rotation and a similarity
(scale shared) from FLAME's head frame to the targets' frame. Energy (as before): mean squared
landmark error / spread² + shape_weight |β|² + expression_weight mean |ψ_t|² + smoothness_weight
(mean |ψ_t - ψ_t-1|² + mean |θ_t - θ_t-1|²).

Only the landmarks are skinned during the iterations, and only the vertices they touch: with the
global, neck and eye rotations zero, FLAME's skinning of a vertex is
``v = p + w_jaw (R_jaw - I)(p - J_jaw)`` with ``p`` the vertex after the shape, expression and jaw
pose blend shapes and ``J_jaw`` the regressed jaw joint, so for a fixed jaw every landmark is
linear in (β, ψ). Each iteration (block coordinate descent, no line search, a fixed budget):

1. similarity per frame, shared scale: Umeyama's closed form (rotation, translation per frame;
   the scale pooled over frames);
2. jaw: one damped Gauss-Newton step per frame (3 unknowns, finite-difference Jacobian);
3. shape: the exact linear least squares in (β, ψ) of a set of key frames (ψ eliminated by its
   Schur complement); expression: per frame, the exact linear least squares with β fixed, the
   smoothness prior taken with the neighbours' current values (a Jacobi sweep).

The full 5,023-vertex mesh is skinned once, at the end. Long tracks are fitted in chunks, each
started from the previous chunk's last frame (shape, expression, jaw).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .flame_model import FlameModel, rodrigues

JAW_FEATURES = slice(9, 18)  # posedirs columns of joint 2 (jaw) among joints 1-4
JAW_JOINT = 2


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
    iterations: int = 12          # block coordinate descent sweeps per chunk
    chunk_frames: int = 250       # frames fitted together (memory); the next chunk starts from this one
    key_frames: int = 25          # frames of a chunk that determine the shape
    shape_weight: float = 1e-5
    expression_weight: float = 1e-5
    smoothness_weight: float = 1e-3


class LandmarkRig:
    """FLAME reduced to landmarks ``faces_idx`` (L,) with barycentric weights ``bary`` (L, 3), for
    jaw-only pose; float64. Landmarks = base + (shape, expression) bases, both bent by the jaw."""

    def __init__(self, model: FlameModel, faces_idx: torch.Tensor, bary: torch.Tensor):
        f64 = torch.float64
        corners = model.faces[faces_idx.to(model.faces.device)]          # (L, 3)
        b = bary.to(model.v_template.device, f64)
        weight = model.lbs_weights[corners, JAW_JOINT].double()          # (L, 3)
        jaw_row = model.J_regressor[JAW_JOINT].double()

        def combine(per_vertex: torch.Tensor, at_joint: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """Per landmark: Σ b·x and Σ b·w·(x - x_joint), for x a vertex quantity (V, 3, ...)."""
            x = per_vertex.double()[corners]                             # (L, 3, 3, ...)
            plain = torch.einsum("lk,lkc...->lc...", b, x)
            bent = torch.einsum("lk,lkc...->lc...", b * weight, x - at_joint)
            return plain, bent

        self.template = combine(model.v_template, jaw_row @ model.v_template.double())
        self.shape = combine(model.shapedirs, torch.einsum("v,vcs->cs", jaw_row, model.shapedirs.double()))
        self.expression = combine(model.exprdirs, torch.einsum("v,vcs->cs", jaw_row, model.exprdirs.double()))
        self.pose = combine(model.posedirs[..., JAW_FEATURES], torch.zeros(3, 9, dtype=f64, device=b.device))

    def bases(self, jaw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For jaw rotations (T, 3): the constant term (T, L, 3) and the shape (T, L, 3, S) and
        expression (T, L, 3, E) bases, so that landmarks = c + A β + B ψ_t."""
        bend = rodrigues(jaw) - torch.eye(3, dtype=jaw.dtype, device=jaw.device)   # (T, 3, 3)
        features = bend.reshape(-1, 9)
        pose_plain = torch.einsum("lcp,tp->tlc", self.pose[0], features)
        pose_bent = torch.einsum("lcp,tp->tlc", self.pose[1], features)
        constant = (self.template[0] + pose_plain
                    + torch.einsum("tij,tlj->tli", bend, self.template[1] + pose_bent))
        shape = self.shape[0] + torch.einsum("tij,ljs->tlis", bend, self.shape[1])
        expression = self.expression[0] + torch.einsum("tij,ljs->tlis", bend, self.expression[1])
        return constant, shape, expression

    def landmarks(self, shape: torch.Tensor, expression: torch.Tensor, jaw: torch.Tensor) -> torch.Tensor:
        constant, shape_basis, expression_basis = self.bases(jaw)
        return (constant + torch.einsum("tlis,s->tli", shape_basis, shape)
                + torch.einsum("tlie,te->tli", expression_basis, expression))


def similarity_shared_scale(source: torch.Tensor, target: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Umeyama (IEEE TPAMI 1991) per frame for (T, L, 3) point sets with one scale for all frames:
    rotations (T, 3, 3) and translations (T, 3) per frame, the scale pooled as
    ``Σ tr(D S) / Σ σ²``, so that ``target ≈ scale R source + t``."""
    mu_x, mu_y = source.mean(1, keepdim=True), target.mean(1, keepdim=True)
    xc, yc = source - mu_x, target - mu_y
    u, d, vt = torch.linalg.svd(yc.transpose(1, 2) @ xc)
    sign = torch.ones_like(d)
    sign[:, 2] = torch.sign(torch.linalg.det(u) * torch.linalg.det(vt))
    rotation = u @ torch.diag_embed(sign) @ vt
    scale = (d * sign).sum() / (xc ** 2).sum()
    translation = mu_y[:, 0] - scale * torch.einsum("tij,tj->ti", rotation, mu_x[:, 0])
    return rotation, translation, scale


def _neighbour_sum(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per frame the sum of the previous and next frames' values and how many there are."""
    total = torch.zeros_like(values)
    count = torch.zeros(len(values), dtype=values.dtype, device=values.device)
    total[1:] += values[:-1]
    total[:-1] += values[1:]
    count[1:] += 1
    count[:-1] += 1
    return total, count


def _jaw_step(rig: LandmarkRig, shape, expression, jaw, target, smooth: float, eps: float = 1e-4):
    """One damped Gauss-Newton step on every frame's jaw (3 unknowns) with the rest fixed."""
    residual = (rig.landmarks(shape, expression, jaw) - target).flatten(1)          # (T, 3L)
    columns = []
    for axis in range(3):
        moved = jaw.clone()
        moved[:, axis] += eps
        columns.append(((rig.landmarks(shape, expression, moved) - target).flatten(1) - residual) / eps)
    jacobian = torch.stack(columns, dim=2)                                           # (T, 3L, 3)
    neighbours, count = _neighbour_sum(jaw)
    normal = jacobian.transpose(1, 2) @ jacobian + (smooth * count + 1e-9)[:, None, None] * torch.eye(
        3, dtype=jaw.dtype, device=jaw.device)
    rhs = -torch.einsum("tli,tl->ti", jacobian, residual) + smooth * (neighbours - count[:, None] * jaw)
    return jaw + torch.linalg.solve(normal, rhs)


def _linear_step(rig: LandmarkRig, shape, expression, jaw, target, weights, key_frames: int):
    """Shape from the key frames' exact (β, ψ) least squares, then every frame's expression."""
    shape_weight, expression_weight, smooth = weights
    constant, shape_basis, expression_basis = rig.bases(jaw)
    n_frames, n_expression = expression.shape
    data = (target - constant).flatten(1)                                           # (T, 3L)
    a, b = shape_basis.flatten(1, 2), expression_basis.flatten(1, 2)                # (T, 3L, S), (T, 3L, E)
    eye = torch.eye(n_expression, dtype=a.dtype, device=a.device)
    keys = torch.linspace(0, n_frames - 1, min(key_frames, n_frames), device=a.device).round().long().unique()
    bk, ak, dk = b[keys], a[keys], data[keys]
    hk = bk.transpose(1, 2) @ bk + expression_weight * eye
    gk = bk.transpose(1, 2) @ ak                                                    # (K, E, S)
    solved = torch.linalg.solve(hk, torch.cat([gk, torch.einsum("tle,tl->te", bk, dk)[..., None]], dim=2))
    reduced = (ak.transpose(1, 2) @ ak).sum(0) - (gk.transpose(1, 2) @ solved[..., :-1]).sum(0)
    reduced += shape_weight * len(keys) / n_frames * torch.eye(len(shape), dtype=a.dtype, device=a.device)
    rhs = torch.einsum("tls,tl->s", ak, dk) - torch.einsum("tes,te->s", gk, solved[..., -1])
    shape = torch.linalg.solve(reduced, rhs)
    neighbours, count = _neighbour_sum(expression)
    normal = b.transpose(1, 2) @ b + (expression_weight + smooth * count)[:, None, None] * eye
    rhs = torch.einsum("tle,tl->te", b, data - a @ shape) + smooth * neighbours
    return shape, torch.linalg.solve(normal, rhs)


def _fit_chunk(model: FlameModel, rig: LandmarkRig, target: torch.Tensor, settings: FitSettings,
               start: tuple[torch.Tensor, torch.Tensor, torch.Tensor]):
    shape, expression, jaw = start
    n_frames, n_landmarks = target.shape[:2]
    for _ in range(settings.iterations):
        model_landmarks = rig.landmarks(shape, expression, jaw)
        rotation, translation, scale = similarity_shared_scale(model_landmarks, target)
        local = torch.einsum("tli,tij->tlj", target - translation[:, None], rotation) / scale  # FLAME frame
        spread = float(target.std()) / float(scale)
        unit = n_landmarks * spread ** 2  # the energy above times T·L·spread²
        smooth = settings.smoothness_weight * unit * n_frames / max(n_frames - 1, 1)
        jaw = _jaw_step(rig, shape, expression, jaw, local, smooth)
        shape, expression = _linear_step(rig, shape, expression, jaw, local,
                                         (settings.shape_weight * unit * n_frames,
                                          settings.expression_weight * unit, smooth), settings.key_frames)
    model_landmarks = rig.landmarks(shape, expression, jaw)
    rotation, translation, scale = similarity_shared_scale(model_landmarks, target)
    return shape, expression, jaw, rotation, translation, scale


def fit_flame(model: FlameModel, targets: np.ndarray, settings: FitSettings = FitSettings(),
              faces_idx: np.ndarray | None = None, bary: np.ndarray | None = None) -> FlameFit:
    """Fit FLAME to landmark tracks ``targets`` (T, L, 3) (any frame and unit: the similarity
    absorbs them). The landmarks are FLAME's triangles ``faces_idx`` (L,) with barycentric
    weights ``bary`` (L, 3); by default the model file's own embedding."""
    device = model.v_template.device
    faces = model.lmk_faces_idx if faces_idx is None else torch.as_tensor(faces_idx, dtype=torch.int64)
    weights = model.lmk_bary_coords if bary is None else torch.as_tensor(bary)
    rig = LandmarkRig(model, faces, weights)
    target = torch.as_tensor(np.asarray(targets), dtype=torch.float64, device=device)
    n_frames = len(target)
    start = (torch.zeros(model.n_shape, dtype=torch.float64, device=device),
             torch.zeros(1, model.n_expression, dtype=torch.float64, device=device),
             torch.zeros(1, 3, dtype=torch.float64, device=device))
    shapes, expressions, jaws, similarities = [], [], [], []
    squared_error = 0.0
    for first in range(0, n_frames, settings.chunk_frames):
        chunk = target[first:first + settings.chunk_frames]
        init = (start[0], start[1][-1:].expand(len(chunk), -1).clone(), start[2][-1:].expand(len(chunk), -1).clone())
        shape, expression, jaw, rotation, translation, scale = _fit_chunk(model, rig, chunk, settings, init)
        similarity = torch.zeros(len(chunk), 4, 4, dtype=torch.float64, device=device)
        similarity[:, :3, :3] = scale * rotation
        similarity[:, :3, 3] = translation
        similarity[:, 3, 3] = 1
        moved = torch.einsum("tij,tlj->tli", similarity[:, :3, :3], rig.landmarks(shape, expression, jaw))
        squared_error += float(((moved + translation[:, None] - chunk) ** 2).sum(-1).sum())
        shapes.append(shape.expand(len(chunk), -1))
        expressions.append(expression)
        jaws.append(jaw)
        similarities.append(similarity)
        start = (shape, expression, jaw)
    shape_per_frame, expression, jaw = torch.cat(shapes), torch.cat(expressions), torch.cat(jaws)
    with torch.no_grad():
        vertices = model(shape_per_frame.float(), expression.float(), jaw.float())
    return FlameFit(shape_per_frame[-1].cpu().numpy(), expression.cpu().numpy(), jaw.cpu().numpy(),
                    torch.cat(similarities).float().cpu().numpy(), vertices.cpu().numpy(),
                    float(np.sqrt(squared_error / (n_frames * target.shape[1]))))
