"""DECA checkpoints with random weights and the exact state-dict keys and shapes of the released
``deca_model.tar`` (listed in fixtures/deca_e_flame_keys.txt from DECA's published code)."""

import os

import numpy as np
import torch

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "deca_e_flame_keys.txt")


def published_keys() -> dict[str, tuple[int, ...]]:
    keys = {}
    with open(FIXTURE) as f:
        for line in f:
            if line.startswith("#"):
                continue
            name, _, shape = line.rstrip("\n").partition(" ")
            keys[name] = tuple(int(n) for n in shape.split(",") if n)
    return keys


def random_checkpoint(path: str, seed: int = 0) -> None:
    """``deca_model.tar`` as DECA saves it (a dict with ``E_flame``), every tensor random; batch
    norm statistics positive; the scale of the camera output kept near DECA's range."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in published_keys().items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(1000)
        elif name.endswith("running_var"):
            state[name] = 0.5 + torch.rand(shape, generator=generator)
        elif name.endswith(("bn1.weight", "bn2.weight", "bn3.weight", "downsample.1.weight")):
            state[name] = 0.2 + 0.1 * torch.rand(shape, generator=generator)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1000
            state[name] = torch.randn(shape, generator=generator) / np.sqrt(fan_in)
    state["layers.2.bias"][236 - 30] = 8.0  # cam scale: the face fills the 224 crop as in DECA
    torch.save({"E_flame": state, "E_detail": {}, "D_detail": {}}, path)
