"""DECA's coarse encoder ``E_flame`` (Feng et al., "Learning an Animatable Detailed 3D Face Model
from In-The-Wild Images", SIGGRAPH 2021): a ResNet-50 (He et al., CVPR 2016; bottleneck blocks
[3, 4, 6, 3], no classifier) whose 2048-d average-pooled feature goes through
Linear(2048, 1024) - ReLU - Linear(1024, 236).

The module and parameter names are those of DECA's released checkpoint (``deca_model.tar``, entry
``E_flame``): ``encoder.conv1``, ``encoder.layer1.0.downsample.0``, ..., ``layers.0``,
``layers.2``; ``tests/fixtures/deca_e_flame_keys.txt`` lists them with their shapes.
"""

from __future__ import annotations

import torch
from torch import nn

# DECA's code layout (decalib/utils/config.py: param_list and n_*), in order.
CODE_LAYOUT = (("shape", 100), ("tex", 50), ("exp", 50), ("pose", 6), ("cam", 3), ("light", 27))
CODE_SIZE = sum(size for _, size in CODE_LAYOUT)
BLOCKS = (3, 4, 6, 3)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride here) -> 1x1 convolutions with batch norms, plus the (projected) input."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes * 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + residual)


class ResNet50Features(nn.Module):
    """ResNet-50 trunk to the 2048-d feature after a 7x7 average pool (224x224 input)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = 64
        for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), BLOCKS)):
            stride = 1 if index == 0 else 2
            layer = []
            for block in range(blocks):
                layer.append(Bottleneck(inplanes, planes, stride if block == 0 else 1))
                inplanes = planes * 4
            setattr(self, f"layer{index + 1}", nn.Sequential(*layer))
        self.avgpool = nn.AvgPool2d(7, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        for index in range(1, 5):
            x = getattr(self, f"layer{index}")(x)
        return self.avgpool(x).flatten(1)


class DecaCoarseEncoder(nn.Module):
    """Images (B, 3, 224, 224) RGB in [0, 1] -> DECA's code (B, 236), see :data:`CODE_LAYOUT`."""

    def __init__(self):
        super().__init__()
        self.encoder = ResNet50Features()
        self.layers = nn.Sequential(nn.Linear(2048, 1024), nn.ReLU(), nn.Linear(1024, CODE_SIZE))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(self.encoder(images))


def split_code(code: torch.Tensor) -> dict[str, torch.Tensor]:
    """DECA's ``decompose_code``: the flat code cut into its named parts, in :data:`CODE_LAYOUT`
    order (``pose`` is global axis-angle then jaw axis-angle; ``cam`` is scale, tx, ty)."""
    parts, start = {}, 0
    for name, size in CODE_LAYOUT:
        parts[name] = code[:, start:start + size]
        start += size
    return parts
