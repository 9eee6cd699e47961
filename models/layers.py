"""Building blocks shared by the models: a pre-norm transformer with ALiBi position biases (and
optional alignment-biased cross-attention), the speech encoder, the style encoder, and FaceFormer's
decoder (periodic positional encoding, periodic causal bias, alignment mask), which CodeTalker's
stage 2 reuses."""

from __future__ import annotations

import math

import torch
from torch import nn


def alibi_slopes(n_heads: int) -> list[float]:
    """ALiBi's head slopes (Press et al., ICLR 2022): ``2**(-8 (h+1) / n)`` for a power of two;
    otherwise those of the closest lower power of two, then every other slope of twice as many
    heads (the rule of the ALiBi and FaceFormer code)."""
    if math.log2(n_heads).is_integer():
        return [2.0 ** (-8.0 * (h + 1) / n_heads) for h in range(n_heads)]
    lower = 2 ** math.floor(math.log2(n_heads))
    return alibi_slopes(lower) + alibi_slopes(2 * lower)[0::2][:n_heads - lower]


def alibi_bias(n_heads: int, length: int, causal: bool, device=None) -> torch.Tensor:
    """Attention biases of ALiBi (Press et al., ICLR 2022): ``-slope_h * |i - j|``, with ``-inf``
    above the diagonal when ``causal``. (1, H, L, L)."""
    slopes = torch.tensor(alibi_slopes(n_heads), device=device)
    position = torch.arange(length, device=device)
    distance = (position[:, None] - position[None, :]).abs().float()
    bias = -slopes[:, None, None] * distance
    if causal:
        bias = bias.masked_fill(position[None, :] > position[:, None], -math.inf)
    return bias[None]


class Block(nn.Module):
    """Pre-norm self-attention, optional cross-attention to a memory, and MLP, all residual."""

    def __init__(self, dim: int, heads: int, dropout: float, cross: bool = False):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), nn.Dropout(dropout))
        self.cross = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True) if cross else None
        self.norm_cross = nn.LayerNorm(dim) if cross else None

    def forward(self, x: torch.Tensor, bias: torch.Tensor, memory: torch.Tensor | None = None,
                memory_bias: torch.Tensor | None = None) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        attended = nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=bias.to(q.dtype), dropout_p=self.dropout if self.training else 0.0)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, length, dim))
        if self.cross is not None and self.norm_cross is not None and memory is not None:
            mask = None if memory_bias is None else memory_bias.expand(batch, -1, -1, -1).flatten(0, 1).to(x.dtype)
            x = x + self.cross(self.norm_cross(x), memory, memory, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """A stack of :class:`Block` with ALiBi biases, causal or not, and a final norm. With
    ``cross``, every block also attends to a ``memory`` (B, L, dim) aligned step for step with the
    input, through FaceFormer's alignment mask (:func:`alignment_mask`: step i sees memory step i)."""

    def __init__(self, dim: int, layers: int, heads: int, dropout: float, causal: bool, cross: bool = False):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.blocks = nn.ModuleList(Block(dim, heads, dropout, cross) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        bias = alibi_bias(self.heads, x.shape[1], self.causal, x.device)
        memory_bias = None
        if memory is not None:  # FaceFormer's alignment bias: step i attends to memory step i
            memory_bias = torch.zeros(1, 1, x.shape[1], memory.shape[1], device=x.device).masked_fill(
                alignment_mask(x.shape[1], memory.shape[1], x.device), -math.inf).expand(-1, self.heads, -1, -1)
        for block in self.blocks:
            x = block(x, bias, memory, memory_bias)
        return self.norm(x)


class SpeechEncoder(nn.Module):
    """Normalized frame features (B, T, F) -> (B, T / rate, dim): a temporal convolution, a
    bidirectional transformer (speech context on both sides, as the pretrained speech encoders of
    FaceFormer and CodeTalker give), then ``rate`` frames merged per output step. With
    ``layers = 0`` only the linear map (FaceFormer's ``audio_feature_map``, for features of a
    pretrained wav2vec 2.0 that carry their own context)."""

    def __init__(self, feature_dim: int, dim: int, layers: int, heads: int, dropout: float, rate: int = 1):
        super().__init__()
        self.rate = rate
        self.conv = nn.Conv1d(feature_dim, dim, kernel_size=5, padding=2) if layers else None
        self.context = Transformer(dim, layers, heads, dropout, causal=False) if layers else None
        self.merge = nn.Linear(rate * (dim if layers else feature_dim), dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features
        if self.conv is not None and self.context is not None:
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

    def with_dropout(self, reference: torch.Tensor, probability: float,
                     present: torch.Tensor | None = None) -> torch.Tensor:
        """Style vectors for training: windows whose ``present`` (B,) is False get the 'no
        reference' vector, and in training each other reference is dropped with ``probability``."""
        style = self(reference, len(reference))
        keep = torch.ones(len(reference), 1, dtype=torch.bool, device=reference.device)
        if present is not None:
            keep = keep & present.to(reference.device).bool()[:, None]
        if self.training and probability > 0:
            keep = keep & (torch.rand(len(reference), 1, device=reference.device) >= probability)
        return torch.where(keep, style, self.no_reference.expand_as(style))


def periodic_causal_bias(n_heads: int, length: int, period: int, device=None) -> torch.Tensor:
    """FaceFormer's biased causal self-attention mask (``init_biased_mask``, Fan et al., CVPR
    2022): for key j <= query i the bias ``-slope_h * floor((i - j) / period)`` (ALiBi slopes,
    constant within a period), ``-inf`` for j > i. (H, L, L)."""
    slopes = torch.tensor(alibi_slopes(n_heads), device=device)
    position = torch.arange(length, device=device)
    distance = torch.div(position[:, None] - position[None, :], period, rounding_mode="floor").float()
    bias = -slopes[:, None, None] * distance
    return bias.masked_fill(position[None, :] > position[:, None], -math.inf)


def alignment_mask(length: int, memory_length: int, device=None) -> torch.Tensor:
    """FaceFormer's alignment bias (``enc_dec_mask``, VOCASET case: speech and motion at one rate):
    query frame i attends only to speech frame i. Boolean (L, S), True = not attended."""
    return ~torch.eye(length, memory_length, dtype=torch.bool, device=device)


def sinusoid_table(length: int, dim: int) -> torch.Tensor:
    """The sinusoidal encoding (Vaswani et al., 2017): sin at even, cos at odd channels. (length, dim)."""
    position = torch.arange(length, dtype=torch.float)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2).float() * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2], table[:, 1::2] = torch.sin(position * frequency), torch.cos(position * frequency)
    return table


class PeriodicPositionalEncoding(nn.Module):
    """FaceFormer's periodic positional encoding: the sinusoidal encoding of ``t mod period``
    added to the input, then dropout."""

    pe: torch.Tensor

    def __init__(self, dim: int, period: int, dropout: float):
        super().__init__()
        self.register_buffer("pe", sinusoid_table(period, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = torch.arange(x.shape[1], device=x.device) % len(self.pe)
        return self.dropout(x + self.pe[index])


class BiasedDecoder(nn.Module):
    """FaceFormer's motion decoder: periodic positional encoding, then a stack of PyTorch's
    (post-norm) transformer decoder layers with feed-forward width 2 * dim, whose self-attention
    carries :func:`periodic_causal_bias` and whose cross-attention to the speech features carries
    :func:`alignment_mask`. Inputs (B, T, dim), speech (B, S >= T, dim) -> (B, T, dim)."""

    def __init__(self, dim: int, layers: int, heads: int, period: int, dropout: float):
        super().__init__()
        self.heads, self.period = heads, period
        self.ppe = PeriodicPositionalEncoding(dim, period, dropout)
        layer = nn.TransformerDecoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=dropout, batch_first=True)
        self.decoder = nn.TransformerDecoder(layer, num_layers=layers)

    def forward(self, inputs: torch.Tensor, speech: torch.Tensor) -> torch.Tensor:
        batch, length = inputs.shape[:2]
        bias = periodic_causal_bias(self.heads, length, self.period, inputs.device)
        self_mask = bias[None].expand(batch, -1, -1, -1).flatten(0, 1).to(inputs.dtype)  # (B * H, T, T)
        memory_mask = alignment_mask(length, speech.shape[1], inputs.device)
        return self.decoder(self.ppe(inputs), speech, tgt_mask=self_mask, memory_mask=memory_mask)
