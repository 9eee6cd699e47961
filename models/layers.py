"""Building blocks shared by the models: a pre-norm transformer with ALiBi position biases, the
speech encoder and the style encoder."""

from __future__ import annotations

import math

import torch
from torch import nn


def alibi_bias(n_heads: int, length: int, causal: bool, device=None) -> torch.Tensor:
    """Attention biases of ALiBi (Press et al., ICLR 2022): ``-slope_h * |i - j|``, with ``-inf``
    above the diagonal when ``causal``. FaceFormer (CVPR 2022) biases its decoder the same way so
    that it generalises to sequences longer than those it was trained on. (1, H, L, L)."""
    slopes = torch.tensor([2.0 ** (-8.0 * (h + 1) / n_heads) for h in range(n_heads)], device=device)
    position = torch.arange(length, device=device)
    distance = (position[:, None] - position[None, :]).abs().float()
    bias = -slopes[:, None, None] * distance
    if causal:
        bias = bias.masked_fill(position[None, :] > position[:, None], -math.inf)
    return bias[None]


class Block(nn.Module):
    """Pre-norm self-attention and MLP, both residual."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        attended = nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=bias.to(q.dtype), dropout_p=self.dropout if self.training else 0.0)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, length, dim))
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """A stack of :class:`Block` with ALiBi biases, causal or not, and a final norm."""

    def __init__(self, dim: int, layers: int, heads: int, dropout: float, causal: bool):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.blocks = nn.ModuleList(Block(dim, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = alibi_bias(self.heads, x.shape[1], self.causal, x.device)
        for block in self.blocks:
            x = block(x, bias)
        return self.norm(x)


class SpeechEncoder(nn.Module):
    """Normalized frame features (B, T, F) -> (B, T / rate, dim): a temporal convolution, a
    bidirectional transformer (speech context on both sides, as the pretrained speech encoders of
    FaceFormer and CodeTalker give), then ``rate`` frames merged per output step."""

    def __init__(self, feature_dim: int, dim: int, layers: int, heads: int, dropout: float, rate: int = 1):
        super().__init__()
        self.rate = rate
        self.conv = nn.Conv1d(feature_dim, dim, kernel_size=5, padding=2)
        self.context = Transformer(dim, layers, heads, dropout, causal=False)
        self.merge = nn.Linear(rate * dim, dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.context(nn.functional.gelu(self.conv(features.transpose(1, 2))).transpose(1, 2))
        batch, length, dim = x.shape
        return self.merge(x.reshape(batch, length // self.rate, self.rate * dim))


class StyleEncoder(nn.Module):
    """A reference clip's normalized motion (B, L, D) -> one style vector (B, dim); ``None`` gives
    a learned 'no reference' vector (used for a fraction of training windows so that generation
    without a reference works)."""

    def __init__(self, motion_dim: int, dim: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(motion_dim, dim, 3, padding=1), nn.GELU(),
                                  nn.Conv1d(dim, dim, 3, padding=1), nn.GELU())
        self.out = nn.Linear(2 * dim, dim)
        self.no_reference = nn.Parameter(torch.zeros(dim))

    def forward(self, reference: torch.Tensor | None, batch: int) -> torch.Tensor:
        if reference is None:
            return self.no_reference.expand(batch, -1)
        h = self.conv(reference.transpose(1, 2))
        return self.out(torch.cat([h.mean(-1), h.std(-1)], dim=-1))

    def with_dropout(self, reference: torch.Tensor, probability: float) -> torch.Tensor:
        """Style vectors for training: each window's reference is dropped with ``probability``."""
        style = self(reference, len(reference))
        if not self.training or probability <= 0:
            return style
        keep = torch.rand(len(reference), 1, device=reference.device) >= probability
        return torch.where(keep, style, self.no_reference.expand_as(style))
