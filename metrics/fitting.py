"""The training loop the evaluation networks share (style recognition, SyncNet-3D): Adam at a
fixed rate over a fixed number of steps, one loss per step."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

log = logging.getLogger(__name__)


def fit(model: nn.Module, loss_at: Callable[[int], torch.Tensor], steps: int, log_every: int = 0,
        name: str = "") -> list[float]:
    """Train ``model`` with Adam (learning rate 1e-3) for ``steps`` steps; ``loss_at(step)`` draws
    the step's batch and returns its loss. Logs every ``log_every`` steps (never with 0); returns
    the loss per step."""
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for step in range(steps):
        loss = loss_at(step)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        if log_every and step % log_every == 0:
            log.info("%s step %d loss %.3f", name, step, loss.item())
    return losses
