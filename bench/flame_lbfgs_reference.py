"""The FLAME fitter as it was before the landmark-only solver (full 5,023-vertex skinning at every
function evaluation, L-BFGS with a strong Wolfe line search over all frames at once): the
reference that ``bench_flame.py`` measures the current fitter's speed and landmark error against."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from voxmesh.recon.flame_fit import FlameFit
from voxmesh.recon.flame_model import FlameModel, rodrigues


@dataclasses.dataclass(frozen=True)
class LbfgsSettings:
    steps: int = 100              # L-BFGS iterations (each up to 20 function evaluations)
    shape_weight: float = 1e-5
    expression_weight: float = 1e-5
    smoothness_weight: float = 1e-3


def fit_flame_lbfgs(model: FlameModel, targets: np.ndarray, settings: LbfgsSettings = LbfgsSettings()) -> FlameFit:
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
    shape_array = shape.detach().cpu().numpy()
    return FlameFit(shape_array, np.repeat(shape_array[None], n_frames, axis=0), expression.detach().cpu().numpy(),
                    jaw.detach().cpu().numpy(), similarity.cpu().numpy(), vertices.cpu().numpy(), rmse)


def _umeyama_torch(source: torch.Tensor, target: torch.Tensor):
    from voxmesh.recon.pose import umeyama
    scale, rotation, translation = umeyama(source.cpu().double().numpy(), target.cpu().double().numpy())
    device = source.device
    return scale, torch.as_tensor(rotation, dtype=torch.float32, device=device), \
        torch.as_tensor(translation, dtype=torch.float32, device=device)


def _axis_angle(rotation: torch.Tensor) -> torch.Tensor:
    from scipy.spatial.transform import Rotation
    return torch.as_tensor(Rotation.from_matrix(rotation.cpu().double().numpy()).as_rotvec(), dtype=torch.float32,
                           device=rotation.device)
