"""Normalization statistics, computed once from the training split and stored with the model.

Motion (vertices minus the clip's template, flattened to D = 3V) is normalized by its mean per
coordinate and by one standard deviation for all coordinates, so that errors in normalized units
stay proportional to distances on the face. Speech features are normalized per dimension. The
mean template (the average face of the training clips) stands in for a speaker template when the
user gives no reference clip.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import torch

from voxmesh.schemas.errors import ConfigError

from .data import DataConfig, evaluation_stream


@dataclasses.dataclass
class Stats:
    motion_mean: torch.Tensor    # (D,)
    motion_std: torch.Tensor     # ()
    feature_mean: torch.Tensor   # (F,)
    feature_std: torch.Tensor    # (F,)
    template_mean: torch.Tensor  # (V, 3)
    topology: str
    windows: int

    def to_dict(self) -> dict:
        return dict(vars(self))

    @classmethod
    def from_dict(cls, values: dict) -> Stats:
        return cls(**values)

    def to(self, device) -> Stats:
        moved: dict = {name: value.to(device) for name, value in vars(self).items() if torch.is_tensor(value)}
        return dataclasses.replace(self, **moved)

    def normalize_motion(self, motion: torch.Tensor) -> torch.Tensor:
        """(B, T, V, 3) -> (B, T, 3V)."""
        return (motion.flatten(-2) - self.motion_mean) / self.motion_std

    def denormalize_motion(self, motion: torch.Tensor) -> torch.Tensor:
        """(..., T, 3V) -> (..., T, V, 3)."""
        return (motion * self.motion_std + self.motion_mean).unflatten(-1, (-1, 3))

    def normalize_features(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.feature_mean) / self.feature_std


@torch.no_grad()
def compute_stats(config: DataConfig, features: torch.nn.Module) -> Stats:
    """One pass over (up to ``config.stats_shards`` shards of) the split, every window once; the
    speech features are computed on the device of ``features``."""
    sums: dict[str, np.ndarray] = {}

    def add(name, value):
        sums[name] = sums.get(name, np.zeros(())) + value

    windows, topologies = 0, set()
    device = next(itertools.chain(features.parameters(), features.buffers()), torch.empty(0)).device
    for window in evaluation_stream(config, config.stats_shards):
        topologies.add(window["topology"])
        motion = window["motion"].reshape(len(window["motion"]), -1).astype(np.float64)
        waveform = torch.from_numpy(window["audio"])[None].to(device)
        frame_features = features(waveform, len(motion))[0].double().cpu().numpy()
        add("motion", motion.sum(0))
        add("motion_sq", (motion ** 2).sum(0))
        add("features", frame_features.sum(0))
        add("features_sq", (frame_features ** 2).sum(0))
        add("template", window["template"].astype(np.float64))
        add("frames", len(motion))
        windows += 1
    if not windows:
        raise ConfigError(f"no {config.window}-frame windows in the {config.split} split of {config.dataset}: "
                         f"clips are shorter than data.window; lower it or build longer clips")
    if len(topologies) > 1:
        raise ConfigError(f"the {config.split} split of {config.dataset} mixes topologies {sorted(topologies)}; "
                         f"a model is trained on one topology")
    frames = sums["frames"]
    motion_mean = sums["motion"] / frames
    motion_var = (sums["motion_sq"] / frames - motion_mean ** 2).mean()
    feature_mean = sums["features"] / frames
    feature_var = np.maximum(sums["features_sq"] / frames - feature_mean ** 2, 0.0)

    def tensor(array):
        return torch.tensor(np.asarray(array), dtype=torch.float32)
    return Stats(motion_mean=tensor(motion_mean), motion_std=tensor(np.sqrt(max(motion_var, 1e-12))),
                 feature_mean=tensor(feature_mean), feature_std=tensor(np.sqrt(feature_var) + 1e-5),
                 template_mean=tensor(sums["template"] / windows), topology=topologies.pop(), windows=windows)
