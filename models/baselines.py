"""The deterministic baselines, as their papers and released code build them, on voxmesh data:

- :class:`FaceFormerGenerator`: FaceFormer (Fan et al., CVPR 2022; EvelynFan/FaceFormer
  ``faceformer.py``, ``wav2vec.py``). Speech: with ``data.audio_model`` (a local wav2vec 2.0),
  wav2vec 2.0 inside the model as published: feature extractor frozen, its output linearly
  resampled to the motion frames, projection and transformer layers fine-tuned with the generator
  (:class:`~.audio.PretrainedSpeechModel`), then a linear map to ``dim``
  (``generator.speech_layers = 0``); else log-mel features. A motion decoder
  (:class:`~.layers.BiasedDecoder`: periodic positional encoding, periodic causal self-attention
  bias, alignment-biased cross-attention, one layer in the VOCASET configuration) whose first
  input is the style embedding and whose next inputs are the embedded previous outputs plus the
  style embedding; a zero-initialised linear map back to the motion. Trained autoregressively on
  its own outputs, gradients through the whole rollout (the published ``main.py`` calls the model
  with ``teacher_forcing=False``).
- :class:`CodeTalkerGenerator`: CodeTalker stage 2 (Xing et al., CVPR 2023; Doubiiu/CodeTalker
  ``models/stage2.py``) on CodeTalker's own stage 1 (:class:`~.codetalker_vq.CodeTalkerVQ`, the
  transformer VQ-autoencoder with its factorized codebook, trained by ``kind = "codetalker_vq"``).
  The same decoder (six layers in the VOCASET config) feeds a zero-initialised, bias-free linear
  map to the stage-1 latent (``factors`` codes per frame), which is snapped to the frozen codebook
  (straight-through) and decoded by the frozen stage-1 decoder; loss = motion MSE + MSE between
  the predicted latent and the quantized latent of the truth. Trained with teacher forcing (its
  config: ``teacher_forcing: True``); at generation each step decodes the quantized prefix and
  feeds the last frame back, as ``predict`` does. Its wav2vec 2.0 is fine-tuned like FaceFormer's,
  as its released code does.

Where voxmesh still departs (README, "Training and comparing models"): the style comes from a
reference clip of the same speaker through :class:`~.layers.StyleEncoder` instead of a one-hot of
the training speakers (VoxCeleb2's test speakers are unseen); wav2vec 2.0's SpecAugment time
masking in training is left out (the released code draws it from numpy's global generator, which
would make runs irreproducible); with log-mel features a small bidirectional transformer
(``generator.speech_layers``) stands in for wav2vec 2.0's context network.
"""

from __future__ import annotations

import torch
from torch import nn

from .codetalker_vq import CodeTalkerVQ
from .generators import GeneratorConfig, Sampling
from .layers import BiasedDecoder, SpeechEncoder, StyleEncoder


class BiasedDecoderModel(nn.Module):
    """What FaceFormer and CodeTalker's stage 2 share: speech map, style embedding, the motion
    embedding (``vertice_map``) and the biased decoder; per-frame steps."""

    frames_per_step = 1

    def __init__(self, motion_dim: int, feature_dim: int, config: GeneratorConfig):
        super().__init__()
        self.config = config
        self.speech = SpeechEncoder(feature_dim, config.dim, config.speech_layers, config.heads, config.dropout)
        self.style = StyleEncoder(motion_dim, config.dim)
        self.motion_in = nn.Linear(motion_dim, config.dim)
        self.decoder = BiasedDecoder(config.dim, config.layers, config.heads, config.period, config.dropout)

    def condition(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(speech (B, T, dim), style (B, 1, dim)) of a training batch."""
        style = self.style.with_dropout(batch["reference"], self.config.style_dropout, batch.get("has_reference"))
        return self.speech(batch["features"]), style[:, None]

    def teacher_forced_inputs(self, motion: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Decoder inputs (B, T, dim): the style embedding, then the embedded true frames + style."""
        return torch.cat([style, self.motion_in(motion[:, :-1]) + style], 1)

    def unroll(self, speech: torch.Tensor, style: torch.Tensor, n_frames: int) -> torch.Tensor:
        """Autoregressive decoding as the published ``predict``: decoder outputs (B, T, dim) where
        frame t's input is the style, or :meth:`frame_of` of the outputs so far, embedded, + style."""
        inputs = style
        for t in range(n_frames):
            hidden = self.decoder(inputs, speech)
            if t < n_frames - 1:
                inputs = torch.cat([inputs, self.motion_in(self.frame_of(hidden)) + style], 1)
        return hidden

    def frame_of(self, hidden: torch.Tensor) -> torch.Tensor:
        """The last output frame (B, 1, D) given the decoder outputs so far (B, t, dim)."""
        raise NotImplementedError

    def output(self, hidden: torch.Tensor) -> torch.Tensor:
        """Decoder outputs (B, T, dim) -> normalized motion (B, T, D)."""
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, features: torch.Tensor, reference: torch.Tensor | None, samples: int = 1,
                 sampling: Sampling = Sampling(), generator: torch.Generator | None = None) -> torch.Tensor:
        """Normalized motion (samples, B, T, D) for features (B, T, F); deterministic, so the
        samples are one result repeated (``sampling`` and ``generator`` are not used)."""
        speech, style = self.speech(features), self.style(reference, len(features))[:, None]
        motion = self.output(self.unroll(speech, style, features.shape[1]))
        return motion[None].expand(samples, -1, -1, -1)


class FaceFormerGenerator(BiasedDecoderModel):
    """FaceFormer (CVPR 2022): regress every frame's motion, trained on its own rollout."""

    def __init__(self, motion_dim: int, feature_dim: int, config: GeneratorConfig):
        super().__init__(motion_dim, feature_dim, config)
        self.motion_out = nn.Linear(config.dim, motion_dim)  # vertice_map_r, zero-initialised as published
        nn.init.zeros_(self.motion_out.weight)
        nn.init.zeros_(self.motion_out.bias)

    def frame_of(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.motion_out(hidden[:, -1:])

    def output(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.motion_out(hidden)

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        speech, style = self.condition(batch)
        predicted = self.output(self.unroll(speech, style, batch["motion"].shape[1]))
        loss = nn.functional.mse_loss(predicted, batch["motion"])
        return loss, {"motion": float(loss.detach())}


class CodeTalkerGenerator(BiasedDecoderModel):
    """CodeTalker stage 2 (CVPR 2023): regress the factorized latent, snap it to the codebook."""

    def __init__(self, motion_dim: int, feature_dim: int, config: GeneratorConfig, tokenizer: CodeTalkerVQ):
        super().__init__(motion_dim, feature_dim, config)
        self.tokenizer = tokenizer.requires_grad_(False)
        self.latent_out = nn.Linear(config.dim, tokenizer.latent_dim, bias=False)  # feat_map, zero-initialised
        nn.init.zeros_(self.latent_out.weight)

    def snap(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> their quantized version, with straight-through gradients."""
        return latents + (self.tokenizer.quantized(latents.detach()) - latents).detach()

    def frame_of(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.output(hidden)[:, -1:]

    def output(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.tokenizer.decode_latents(self.snap(self.latent_out(hidden)))

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        self.tokenizer.eval()
        motion = batch["motion"]
        with torch.no_grad():
            target = self.tokenizer.quantized(self.tokenizer.encode_latents(motion))
        speech, style = self.condition(batch)
        predicted = self.latent_out(self.decoder(self.teacher_forced_inputs(motion, style), speech))
        motion_loss = nn.functional.mse_loss(self.tokenizer.decode_latents(self.snap(predicted)), motion)
        latent_loss = nn.functional.mse_loss(predicted, target)
        return motion_loss + latent_loss, {"latent": float(latent_loss.detach()), "motion": float(motion_loss.detach())}
