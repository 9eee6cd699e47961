"""face-alignment 3D FAN checkpoints with random weights: the real architectures and file layouts
(the FAN state dict as is, the depth one under ``state_dict`` with ``module.`` prefixes), under the
file names face-alignment gives them. The real weights cannot be downloaded here; the compute per
frame is the same."""

from __future__ import annotations

import os


def write_random_fan3d_weights(folder: str, seed: int = 0) -> dict[str, str]:
    import torch
    from face_alignment.models import FAN, ResNetDepth

    from voxmesh.recon.fan3d import weight_files
    paths = {role: os.path.join(folder, name) for role, name in weight_files().items()}
    torch.manual_seed(seed)
    torch.save(FAN(4).state_dict(), paths["fan"])
    torch.save({"state_dict": {f"module.{k}": v for k, v in ResNetDepth().state_dict().items()}}, paths["depth"])
    return paths
