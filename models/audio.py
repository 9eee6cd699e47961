"""Speech features at the motion frame rate (25 fps) from 16 kHz waveforms.

- :class:`LogMelFeatures` (default): 40-band log-mel, 10 ms hop; the four hops under each video
  frame are stacked into one 160-dimensional frame feature.
- :class:`PretrainedSpeechFeatures`: the last hidden layer of a HuBERT or wav2vec 2.0 model read
  from a local folder (``save_pretrained`` layout: ``config.json`` + weights) through
  ``transformers``, frozen, linearly resampled from its 50 Hz to 25 fps (as FaceFormer does).
  Nothing is downloaded: a missing folder or file is an error that names it.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from voxmesh.metrics.speech_features import HOP, N_MELS, LogMel
from voxmesh.schemas import SAMPLES_PER_FRAME
from voxmesh.schemas.errors import MissingFileError

HOPS_PER_FRAME = SAMPLES_PER_FRAME // HOP


class LogMelFeatures(nn.Module):
    """(B, S) waveform -> (B, T, 160) log-mel frame features, T = ``n_frames``."""

    dim = N_MELS * HOPS_PER_FRAME

    def __init__(self):
        super().__init__()
        self.logmel = LogMel()

    def forward(self, waveform: torch.Tensor, n_frames: int) -> torch.Tensor:
        mel = self.logmel(waveform)[..., :n_frames * HOPS_PER_FRAME]  # (B, N_MELS, hops)
        mel = nn.functional.pad(mel, (0, n_frames * HOPS_PER_FRAME - mel.shape[-1]), value=float(mel.min()))
        return mel.transpose(1, 2).reshape(len(waveform), n_frames, self.dim)


class PretrainedSpeechFeatures(nn.Module):
    """(B, S) waveform -> (B, T, hidden) features of a local pretrained speech model, frozen."""

    def __init__(self, directory: str):
        super().__init__()
        config_path = os.path.join(directory, "config.json")
        if not os.path.isfile(config_path):
            raise MissingFileError(
                f"{config_path} not found: data.audio_model must be a local folder holding a HuBERT or "
                f"wav2vec 2.0 model saved with transformers' save_pretrained (config.json and weights); "
                f"nothing is downloaded")
        try:
            from transformers import AutoModel
        except ImportError as error:
            raise ImportError("pretrained speech features need transformers: pip install 'voxmesh[speech]'") from error
        self.model = AutoModel.from_pretrained(directory, local_files_only=True)
        self.model.eval().requires_grad_(False)
        self.dim = self.model.config.hidden_size

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()  # frozen: its dropout stays off
        return self

    def forward(self, waveform: torch.Tensor, n_frames: int) -> torch.Tensor:
        waveform = (waveform - waveform.mean(-1, keepdim=True)) / (waveform.std(-1, keepdim=True) + 1e-7)
        with torch.no_grad():
            hidden = self.model(waveform).last_hidden_state  # (B, frames at ~50 Hz, hidden)
        return nn.functional.interpolate(hidden.transpose(1, 2), size=n_frames, mode="linear",
                                         align_corners=True).transpose(1, 2)


def audio_features(audio_model: str) -> nn.Module:
    """The feature extractor a config names: pretrained when ``audio_model`` is set, else log-mel."""
    return PretrainedSpeechFeatures(audio_model) if audio_model else LogMelFeatures()
