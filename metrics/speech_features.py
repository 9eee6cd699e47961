"""Log-mel speech features, shared by the evaluation networks (SyncNet-3D) and the models'
speech encoders, so that both read speech the same way."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from voxmesh.schemas import SAMPLE_RATE

N_MELS, N_FFT, HOP = 40, 512, 160


def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Triangular filters on the HTK mel scale, (n_mels, n_fft // 2 + 1)."""
    def mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)
    edges = hz(np.linspace(mel(20.0), mel(sample_rate / 2), n_mels + 2))
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising, falling = (bins - lower) / (centre - lower), (upper - bins) / (upper - centre)
    return np.clip(np.minimum(rising, falling), 0, None).astype(np.float32)


class LogMel(nn.Module):
    """16 kHz waveform (B, S) -> log-mel (B, N_MELS, frames), 10 ms hop, 32 ms window."""

    filters: torch.Tensor
    window: torch.Tensor

    def __init__(self):
        super().__init__()
        self.register_buffer("filters", torch.from_numpy(mel_filterbank()))
        self.register_buffer("window", torch.hann_window(N_FFT))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        spectrum = torch.stft(waveform, N_FFT, HOP, window=self.window, center=True, return_complex=True)
        return torch.log(self.filters @ spectrum.abs().pow(2) + 1e-6)
