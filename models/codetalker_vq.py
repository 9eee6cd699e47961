"""CodeTalker's stage 1 (Xing et al., CVPR 2023): a transformer VQ-autoencoder of motion with a
factorized codebook, as its released code builds it (Doubiiu/CodeTalker ``models/stage1_vocaset.py``,
``models/lib/base_models.py``, ``models/lib/quantizer.py``, ``metrics/loss.py``, VOCASET config
``config/vocaset/stage1.yaml``, ``quant_factor`` 0: no temporal downsampling).

Encoder: a linear map of the vertices + LeakyReLU(0.2); a width-5 convolution (replicate padding)
+ LeakyReLU + instance norm (no affine); a linear embedding; the sinusoidal positional encoding
(+ dropout 0.1); a transformer. Each frame's ``hidden`` = ``factors * code_dim`` latent is cut into
``factors`` pieces (``face_quan_num``), each snapped to the nearest of the ``codebook_size``
entries (``n_embed``) of one shared ``code_dim`` (``zquant_dim``) codebook, initialised uniform in
±1/``codebook_size`` and learned by gradient (no EMA). Decoder: the same convolution block, linear
embedding, positional encoding and transformer, then a linear map back to the vertices.

Loss (``calc_vq_loss``): reconstruction L1 + ``quant_weight`` * quantization loss, where the
quantization loss is ``mean((sg[z_q] - z)^2) * beta + mean((z_q - sg[z])^2)``: the commitment
term (beta 0.25) moves the encoder, the codebook term moves the codebook (VQ-VAE, van den Oord et
al., 2017, eq. 3).

Transformer (``base_models.Transformer``): pre-norm residual blocks, self-attention with
bias-free query/key/value maps and the logits scaled by ``hidden ** -0.5`` (the full width, as the
released code does, not the head width), then an MLP with the tanh form of GELU; no final norm.

Positional encoding, two forms (``positional``): the released ``PositionalEncoding`` indexes its
table by the first axis of a batch-first tensor, so it adds the encoding of the *sample's index in
the batch* to every frame; at the released batch size of 1 that is the encoding of position 0 for
every frame (``"released"``, the default: what the published tables come from). ``"sequence"``
adds the encoding of each frame's position, as the transformer papers describe it.

Nearest codes are chosen with float32 distances, autocast off, so bfloat16 training picks the codes
float32 would.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from voxmesh.schemas.errors import ConfigError

from .layers import sinusoid_table
from .tokenizer import nearest_code

POSITIONAL = ("released", "sequence")


@dataclasses.dataclass
class CodeTalkerVQConfig:
    """Sizes scaled to voxmesh's small configs; CodeTalker's VOCASET values in brackets
    (``vq_vocaset.toml`` selects them all)."""

    factors: int = 4             # codes per frame, face_quan_num [16]
    code_dim: int = 32           # zquant_dim [64]; hidden_size = factors * code_dim [1024]
    codebook_size: int = 256     # n_embed [256]
    layers: int = 2              # num_hidden_layers [6]
    heads: int = 4               # num_attention_heads [8]
    intermediate: int = 192      # intermediate_size [1536]
    negative_slope: float = 0.2  # neg [0.2]
    dropout: float = 0.1         # of the positional encoding [0.1]
    beta: float = 0.25           # commitment weight [0.25]
    quant_weight: float = 1.0    # quant_loss_weight [1.0]
    positional: str = "released"  # released | sequence (see the module docstring)

    @property
    def hidden(self) -> int:
        return self.factors * self.code_dim


def quantization_losses(latents: torch.Tensor, quantized: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(codebook loss ``mean((z_q - sg[z])^2)``, commitment loss ``mean((sg[z_q] - z)^2)``)."""
    return (quantized - latents.detach()).pow(2).mean(), (quantized.detach() - latents).pow(2).mean()


class FactorizedQuantizer(nn.Module):
    """One codebook of ``size`` vectors of ``dim``; (..., dim) pieces -> nearest entries."""

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.embedding = nn.Embedding(size, dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / size, 1.0 / size)

    def nearest(self, pieces: torch.Tensor) -> torch.Tensor:
        """Indices (...,) of the nearest entries (:func:`~.tokenizer.nearest_code`)."""
        return nearest_code(pieces.reshape(-1, pieces.shape[-1]), self.embedding.weight).view(pieces.shape[:-1])

    def forward(self, pieces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(..., dim) -> quantized (straight-through gradients to the pieces), codes (...,), codebook
        loss, commitment loss (float32)."""
        codes = self.nearest(pieces)
        chosen = self.embedding(codes)
        codebook, commitment = quantization_losses(pieces.float(), chosen.float())
        return pieces + (chosen - pieces).detach(), codes, codebook, commitment


class PositionalEncoding(nn.Module):
    """Adds the sinusoidal encoding of position 0 to every frame (``"released"``) or of each
    frame's position (``"sequence"``), then dropout."""

    table: torch.Tensor

    def __init__(self, dim: int, form: str, dropout: float, max_len: int = 5000):
        super().__init__()
        if form not in POSITIONAL:
            raise ConfigError(f"codetalker_vq.positional must be one of {', '.join(POSITIONAL)}, not {form!r}")
        self.form = form
        self.register_buffer("table", sinusoid_table(1 if form == "released" else max_len, dim), persistent=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        encoding = self.table[:1] if self.form == "released" else self.table[:x.shape[1]]
        return self.dropout(x + encoding.to(x.dtype))


class Attention(nn.Module):
    """Multi-head self-attention without biases on q, k, v; logits scaled by ``dim ** -0.5``."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-1, -2) * self.scale, -1)
        return self.out((weights @ v).transpose(1, 2).reshape(batch, length, dim))


class Transformer(nn.Module):
    """``layers`` x (x + attention(norm(x)), x + mlp(norm(x))); no final norm."""

    def __init__(self, dim: int, layers: int, heads: int, intermediate: int):
        super().__init__()
        self.attention = nn.ModuleList(Attention(dim, heads) for _ in range(layers))
        self.mlp = nn.ModuleList(nn.Sequential(nn.Linear(dim, intermediate), nn.GELU(approximate="tanh"),
                                               nn.Linear(intermediate, dim)) for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(2 * layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (attention, mlp) in enumerate(zip(self.attention, self.mlp)):
            x = x + attention(self.norms[2 * i](x))
            x = x + mlp(self.norms[2 * i + 1](x))
        return x


class InstanceNorm(nn.Module):
    """``nn.InstanceNorm1d(affine=False)`` over (B, C, T): per channel, (x - mean) / sqrt(var +
    1e-5) over time. Written out because torch refuses a single frame, which CodeTalker's stage 2
    decodes at the first step of generation (it normalizes to zero)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, variance = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(variance + 1e-5)


class Coder(nn.Module):
    """What encoder and decoder share: convolution block, linear embedding, positional encoding,
    transformer. (B, T, hidden) -> (B, T, hidden)."""

    def __init__(self, config: CodeTalkerVQConfig):
        super().__init__()
        h = config.hidden
        self.conv = nn.Sequential(nn.Conv1d(h, h, 5, padding=2, padding_mode="replicate"),
                                  nn.LeakyReLU(config.negative_slope), InstanceNorm())
        self.embedding = nn.Linear(h, h)
        self.position = PositionalEncoding(h, config.positional, config.dropout)
        self.transformer = Transformer(h, config.layers, config.heads, config.intermediate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return self.transformer(self.position(self.embedding(x)))


class CodeTalkerVQ(nn.Module):
    """Normalized motion (B, T, D) <-> latents (B, T, hidden) <-> codes (B, T, factors)."""

    def __init__(self, motion_dim: int, config: CodeTalkerVQConfig):
        if config.hidden % config.heads:
            raise ConfigError(f"codetalker_vq.heads ({config.heads}) must divide factors * code_dim ({config.hidden})")
        super().__init__()
        self.config = config
        self.motion_in = nn.Sequential(nn.Linear(motion_dim, config.hidden), nn.LeakyReLU(config.negative_slope))
        self.encoder, self.decoder = Coder(config), Coder(config)
        self.motion_out = nn.Linear(config.hidden, motion_dim)
        self.quantizer = FactorizedQuantizer(config.codebook_size, config.code_dim)

    @property
    def latent_dim(self) -> int:
        return self.config.hidden

    def pieces(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, T, hidden) -> (B, T, factors, code_dim)."""
        return latents.unflatten(-1, (self.config.factors, self.config.code_dim))

    def encode_latents(self, motion: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.motion_in(motion))

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return self.motion_out(self.decoder(latents))

    def quantized(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, T, hidden) -> each piece's nearest entry (B, T, hidden), no gradients."""
        return self.quantizer.embedding(self.quantizer.nearest(self.pieces(latents).detach())).flatten(-2)

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """Training loss on ``batch['motion']`` (normalized): L1 reconstruction + ``quant_weight`` *
        (codebook loss + ``beta`` * commitment loss)."""
        motion = batch["motion"]
        quantized, codes, codebook, commitment = self.quantizer(self.pieces(self.encode_latents(motion)))
        reconstruction = nn.functional.l1_loss(self.decode_latents(quantized.flatten(-2)), motion)
        quantization = codebook + self.config.beta * commitment
        loss = reconstruction + self.config.quant_weight * quantization
        return loss, {"reconstruction": float(reconstruction.detach()), "codebook": float(codebook.detach()),
                      "commitment": float(commitment.detach()), "codes_used": torch.unique(codes).numel()}
