"""Speech at the motion frame rate (25 fps) from 16 kHz waveforms.

What the loader hands the models (:func:`audio_features`, normalized per dimension by the
training statistics):

- :class:`LogMelFeatures` (default): 40-band log-mel, 10 ms hop; the four hops under each video
  frame are stacked into one 160-dimensional frame feature.
- :class:`WaveformFrames` (``data.audio_model`` set): the 640 samples under each frame, which the
  generator's own :class:`PretrainedSpeechModel` turns into features, so that a model that
  fine-tunes it gets gradients.

:class:`PretrainedSpeechModel`: a HuBERT or wav2vec 2.0 model read from a local folder
(``save_pretrained`` layout: ``config.json`` + weights) through ``transformers``, run as
FaceFormer's ``wav2vec.py`` runs it (Fan et al., CVPR 2022; EvelynFan/FaceFormer): the waveform
normalized to zero mean and unit variance, the convolutional feature extractor, its ~50 Hz output
linearly interpolated (``align_corners``) to the motion frames, then the feature projection and
the transformer encoder. With ``fine_tune`` (FaceFormer and CodeTalker, whose released code calls
``feature_extractor._freeze_parameters()`` and trains the rest) the feature extractor is frozen
and the projection and transformer layers train with the generator, dropout on in training;
otherwise (Yang et al.'s generator) the whole model is frozen and stays in evaluation mode.
The released ``wav2vec.py`` also masks time steps (SpecAugment) in training, drawing from numpy's
global generator; voxmesh does not, which keeps training runs reproducible from their seed.
Nothing is downloaded: a missing folder or file is an error that names it.
"""

from __future__ import annotations

import os
from typing import Any

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


class WaveformFrames(nn.Module):
    """(B, S) waveform -> (B, T, 640): the samples under each frame (zero-padded or cut to T frames)."""

    dim = SAMPLES_PER_FRAME

    def forward(self, waveform: torch.Tensor, n_frames: int) -> torch.Tensor:
        total = n_frames * SAMPLES_PER_FRAME
        waveform = nn.functional.pad(waveform[:, :total], (0, max(0, total - waveform.shape[1])))
        return waveform.reshape(len(waveform), n_frames, SAMPLES_PER_FRAME)


def load_speech_model(directory: str) -> Any:
    """The ``transformers`` model saved in ``directory``; an error naming the file when absent."""
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
    return AutoModel.from_pretrained(directory, local_files_only=True)


class PretrainedSpeechModel(nn.Module):
    """Normalized :class:`WaveformFrames` (B, T, 640) -> (B, T, hidden) speech features.

    ``frame_mean`` and ``frame_std`` (640,) are the loader's normalization of the frames, undone
    here to recover the waveform exactly."""

    frame_mean: torch.Tensor
    frame_std: torch.Tensor

    def __init__(self, directory: str, fine_tune: bool, frame_mean: torch.Tensor, frame_std: torch.Tensor):
        super().__init__()
        self.model: Any = load_speech_model(directory)
        self.fine_tune = fine_tune
        self.model.requires_grad_(False)
        if fine_tune:
            self.model.feature_projection.requires_grad_(True)
            self.model.encoder.requires_grad_(True)
        self.register_buffer("frame_mean", frame_mean.clone())
        self.register_buffer("frame_std", frame_std.clone())
        self.dim = int(self.model.config.hidden_size)

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.feature_extractor.eval()
        if not self.fine_tune:
            self.model.eval()  # frozen: its dropout stays off
        return self

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        n_frames = frames.shape[1]
        waveform = (frames * self.frame_std + self.frame_mean).flatten(1)
        waveform = (waveform - waveform.mean(-1, keepdim=True)) / (waveform.std(-1, keepdim=True) + 1e-7)
        with torch.set_grad_enabled(False):
            extracted = self.model.feature_extractor(waveform)  # (B, C, ~50 Hz steps)
        extracted = nn.functional.interpolate(extracted, size=n_frames, mode="linear", align_corners=True)
        with torch.set_grad_enabled(self.fine_tune and torch.is_grad_enabled()):
            projected = self.model.feature_projection(extracted.transpose(1, 2))
            if isinstance(projected, tuple):  # wav2vec 2.0 also returns the normalized extractor output
                projected = projected[0]
            return self.model.encoder(projected).last_hidden_state


def audio_features(audio_model: str) -> nn.Module:
    """What the loader computes for a config: waveform frames when ``audio_model`` is set (the
    generator holds the speech model), else log-mel features."""
    return WaveformFrames() if audio_model else LogMelFeatures()
