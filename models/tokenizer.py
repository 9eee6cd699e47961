"""The motion tokenizer: a temporal convolutional autoencoder with a residual vector quantizer
(RVQ; Zeghidour et al., SoundStream, 2021), the motion codebook of Yang et al. (CVPR 2024).
With ``factors`` > 1 each step's latent is cut into ``factors`` pieces, each quantized with the
same codebooks, as CodeTalker factorizes its codebook (CodeTalker's own stage 1, a transformer
VQ-autoencoder learned by gradient, is :mod:`.codetalker_vq`).

Motion (B, T, D) -> latents (B, S = T / 2**downsample, latent) -> pieces (B, S * factors,
latent / factors) -> codes (B, S * factors, levels) -> motion. Nearest codes are chosen with
float32 distances, autocast off, so that bfloat16 training picks the codes float32 would.
Codebooks are updated by exponential moving averages of their assigned vectors (van den Oord et
al., 2017, appendix), initialised from the first batch, and a code unused for a while is moved to
a random encoder output of the current batch. Under ``torch.distributed`` the statistics are
summed over processes, so every process keeps the same codebooks.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.distributed as dist
from torch import nn


@dataclasses.dataclass
class TokenizerConfig:
    hidden: int = 256
    latent: int = 64
    levels: int = 4          # RVQ depth; 1 = a plain VQ codebook
    codebook_size: int = 256
    downsample: int = 1      # latents per frame: 1 / 2**downsample
    factors: int = 1         # codes per latent step (factorized as CodeTalker's codebook; kept so that older
                             # checkpoints load: CodeTalker now uses codetalker_vq); divides latent
    decay: float = 0.99      # EMA decay of the codebooks
    commitment: float = 0.25


def _all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor


def _broadcast(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.broadcast(tensor, src=0)
    return tensor


def nearest_code(vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Indices of the nearest rows of ``codebook`` (K, dim) for (N, dim) ``vectors``: squared
    distances in float32 with autocast off (a bfloat16 matmul would round them and change the
    choice)."""
    with torch.autocast(vectors.device.type, enabled=False):
        vectors, codebook = vectors.float(), codebook.float()
        distances = vectors.pow(2).sum(-1, keepdim=True) - 2 * vectors @ codebook.T + codebook.pow(2).sum(-1)
    return distances.argmin(-1)


class ResidualVQ(nn.Module):
    """``levels`` codebooks of ``size`` vectors; level k quantizes what levels < k left."""

    codebooks: torch.Tensor
    counts: torch.Tensor
    sums: torch.Tensor
    initialized: torch.Tensor

    def __init__(self, levels: int, size: int, dim: int, decay: float):
        super().__init__()
        self.decay = decay
        self.register_buffer("codebooks", torch.zeros(levels, size, dim))
        self.register_buffer("counts", torch.ones(levels, size))
        self.register_buffer("sums", torch.zeros(levels, size, dim))
        self.register_buffer("initialized", torch.tensor(False))

    @property
    def levels(self) -> int:
        return self.codebooks.shape[0]

    def nearest(self, level: int, vectors: torch.Tensor) -> torch.Tensor:
        """Indices of the nearest codes of ``level`` for (N, dim) vectors (:func:`nearest_code`)."""
        return nearest_code(vectors, self.codebooks[level])

    def forward(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, S, dim) -> quantized latents (straight-through gradients), codes (B, S, levels) and
        the commitment error (mean over levels of ||residual - code||^2). Float32, autocast off."""
        with torch.autocast(latents.device.type, enabled=False):
            return self._forward(latents)

    def _forward(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        flat = latents.reshape(-1, latents.shape[-1]).float()
        if self.training and not bool(self.initialized):
            self._initialize(flat)
        residual, quantized, commitment = flat, torch.zeros_like(flat), flat.new_zeros(())
        indices: list[torch.Tensor] = []
        for level in range(self.levels):
            index = self.nearest(level, residual.detach())
            chosen = self.codebooks[level][index]
            if self.training:
                self._update(level, residual.detach(), index)
            commitment = commitment + (residual - chosen.detach()).pow(2).mean()
            quantized, residual = quantized + chosen, residual - chosen.detach()
            indices.append(index)
        quantized = flat + (quantized - flat).detach()
        codes = torch.stack(indices, -1).view(*latents.shape[:-1], self.levels)
        return quantized.view_as(latents).to(latents.dtype), codes, commitment / self.levels

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """(..., levels) codes -> (..., dim) the sum of their code vectors."""
        return torch.stack([self.codebooks[level][codes[..., level]] for level in range(codes.shape[-1])]).sum(0)

    def quantize(self, latents: torch.Tensor) -> torch.Tensor:
        """Nearest-code quantization without updates: (..., dim) -> codes (..., levels)."""
        residual, codes = latents.reshape(-1, latents.shape[-1]).float(), []
        for level in range(self.levels):
            index = self.nearest(level, residual)
            residual = residual - self.codebooks[level][index]
            codes.append(index)
        return torch.stack(codes, -1).view(*latents.shape[:-1], self.levels)

    @torch.no_grad()
    def _initialize(self, flat: torch.Tensor) -> None:
        residual = flat
        for level in range(self.levels):
            picks = torch.randint(len(residual), (self.codebooks.shape[1],), device=flat.device)
            self.codebooks[level] = _broadcast(residual[picks].clone())
            self.sums[level] = self.codebooks[level]
            residual = residual - self.codebooks[level][self.nearest(level, residual)]
        self.initialized.fill_(True)

    @torch.no_grad()
    def _update(self, level: int, vectors: torch.Tensor, index: torch.Tensor) -> None:
        size = self.codebooks.shape[1]
        assigned = nn.functional.one_hot(index, size).type_as(vectors)
        counts, sums = _all_reduce(assigned.sum(0)), _all_reduce(assigned.T @ vectors)
        self.counts[level].mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.sums[level].mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.counts[level].sum()
        smoothed = (self.counts[level] + 1e-5) / (total + size * 1e-5) * total  # Laplace smoothing
        self.codebooks[level] = self.sums[level] / smoothed[:, None]
        dead = self.counts[level] < 1e-2
        if dead.any():
            replacement = _broadcast(vectors[torch.randint(len(vectors), (size,), device=vectors.device)])
            self.codebooks[level][dead] = replacement[dead]
            self.sums[level][dead] = replacement[dead]
            self.counts[level][dead] = 1.0


def _conv_block(channels: int) -> nn.Module:
    return nn.Sequential(nn.Conv1d(channels, channels, 3, padding=1), nn.GELU(),
                         nn.Conv1d(channels, channels, 3, padding=1))


class Residual(nn.Module):
    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class MotionTokenizer(nn.Module):
    """Normalized motion (B, T, D), T a multiple of 2**downsample <-> codes (B, S * factors, levels)."""

    def __init__(self, motion_dim: int, config: TokenizerConfig):
        super().__init__()
        if config.factors < 1 or config.latent % config.factors:
            raise ValueError(f"tokenizer.factors ({config.factors}) must divide tokenizer.latent ({config.latent})")
        self.config, h = config, config.hidden
        self.frames_per_code = 2 ** config.downsample
        down = [layer for _ in range(config.downsample)
                for layer in (nn.Conv1d(h, h, 4, stride=2, padding=1), nn.GELU(), Residual(_conv_block(h)))]
        up = [layer for _ in range(config.downsample)
              for layer in (Residual(_conv_block(h)), nn.Upsample(scale_factor=2), nn.Conv1d(h, h, 3, padding=1), nn.GELU())]
        self.encoder = nn.Sequential(nn.Conv1d(motion_dim, h, 3, padding=1), nn.GELU(), Residual(_conv_block(h)),
                                     *down, nn.Conv1d(h, config.latent, 1))
        self.decoder = nn.Sequential(nn.Conv1d(config.latent, h, 3, padding=1), nn.GELU(), *up,
                                     Residual(_conv_block(h)), nn.Conv1d(h, motion_dim, 3, padding=1))
        self.rvq = ResidualVQ(config.levels, config.codebook_size, config.latent // config.factors, config.decay)

    def pieces(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, S, latent) -> (B, S * factors, latent / factors): CodeTalker's factorization."""
        return latents.reshape(len(latents), -1, self.rvq.codebooks.shape[-1])

    def steps(self, pieces: torch.Tensor) -> torch.Tensor:
        """(B, S * factors, latent / factors) -> (B, S, latent), the inverse of :meth:`pieces`."""
        return pieces.reshape(len(pieces), -1, self.config.latent)

    def encode_latents(self, motion: torch.Tensor) -> torch.Tensor:
        return self.encoder(motion.transpose(1, 2)).transpose(1, 2)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder(latents.transpose(1, 2)).transpose(1, 2)

    def quantized(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, S, latent) -> their nearest codes' sum (B, S, latent), no updates."""
        return self.steps(self.rvq.lookup(self.rvq.quantize(self.pieces(latents))))

    @torch.no_grad()
    def encode(self, motion: torch.Tensor) -> torch.Tensor:
        """Codes (B, S * factors, levels) of normalized motion, without codebook updates."""
        return self.rvq.quantize(self.pieces(self.encode_latents(motion)))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decode_latents(self.steps(self.rvq.lookup(codes)))

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """Training loss on ``batch['motion']`` (normalized): reconstruction MSE + commitment."""
        motion = batch["motion"]
        quantized, codes, commitment = self.rvq(self.pieces(self.encode_latents(motion)))
        reconstruction = nn.functional.mse_loss(self.decode_latents(self.steps(quantized)), motion)
        used = torch.unique(codes[..., 0]).numel()
        loss = reconstruction + self.config.commitment * commitment
        return loss, {"reconstruction": float(reconstruction.detach()), "commitment": float(commitment.detach()),
                      "codes_used": used}
