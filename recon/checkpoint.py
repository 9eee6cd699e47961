"""Checking released checkpoints (read by :func:`voxmesh.schemas.weights.read_tensors`) against the
network that will hold them."""

from __future__ import annotations

import torch

from voxmesh.schemas.errors import ConfigError


def check_state_dict(path: str, state: dict, network: torch.nn.Module, expected: str) -> None:
    """Raise ConfigError, one line naming ``path``, the first missing and unexpected keys (or the
    first wrong shape) and the ``expected`` network, unless ``state`` fits ``network`` exactly.
    BatchNorm's ``num_batches_tracked`` counters may be absent (they do not change inference)."""
    own = network.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise ConfigError(f"{path}: not {expected}: {len(missing)} keys missing (first: "
                          f"{missing[0] if missing else 'none'}), {len(unexpected)} unexpected (first: "
                          f"{unexpected[0] if unexpected else 'none'})")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor) or value.shape != own[key].shape:
            found = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ConfigError(f"{path}: {key} is {found}, {expected} has {tuple(own[key].shape)}")
