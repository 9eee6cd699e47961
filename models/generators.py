"""The probabilistic generator of Yang et al. (CVPR 2024), its config and sampling; the baselines
(FaceFormer, CodeTalker) are in :mod:`.baselines`.

:class:`ProbabilisticGenerator`: a causal ALiBi temporal transformer over RVQ code steps whose
step input is the style vector (from a reference clip of the same speaker) plus the embedded
previous codes, and which takes speech by cross-attention to the speech encoder's output through
FaceFormer's alignment mask (each step sees its own moment of speech, which the bidirectional
speech encoder has put in context); at each step a small depth transformer predicts the RVQ codes level by
level, coarse to fine, from the temporal state and the codes of the lower levels. Sampled with
temperature and top-p.

Every model takes normalized tensors (see :mod:`.normalization`): ``motion`` (B, T, D),
``features`` (B, T, F) speech features at 25 fps, ``reference`` (B, L, D) or None (in a training
batch with ``has_reference`` (B,): False rows get the 'no reference' style); ``forward``
returns the training loss and logged values, ``generate`` normalized motion (N, B, T, D).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import nn

from voxmesh.schemas.errors import ConfigError

from .layers import SpeechEncoder, StyleEncoder, Transformer
from .tokenizer import MotionTokenizer


@dataclasses.dataclass
class GeneratorConfig:
    dim: int = 128
    layers: int = 2            # temporal transformer (baselines: decoder layers)
    heads: int = 4
    period: int = 25           # FaceFormer / CodeTalker: period of the positional encoding and bias (frames)
    speech_layers: int = 1     # bidirectional transformer over the speech features (0: a linear map only)
    depth_layers: int = 1      # depth transformer over RVQ levels (probabilistic model)
    dropout: float = 0.1
    style_dropout: float = 0.1  # fraction of training windows without their reference


@dataclasses.dataclass
class Sampling:
    """How the probabilistic model picks codes: temperature 0 takes the most likely code; top-p
    keeps the smallest set of codes whose probability reaches ``top_p`` (Holtzman et al., 2020)."""

    temperature: float = 1.0
    top_p: float = 1.0

    def pick(self, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.temperature <= 0:
            return logits.argmax(-1)
        probabilities = torch.softmax(logits.float() / self.temperature, -1)
        if self.top_p < 1:
            ordered, order = probabilities.sort(-1, descending=True)
            outside = ordered.cumsum(-1) - ordered > self.top_p
            probabilities = torch.zeros_like(probabilities).scatter(-1, order, ordered.masked_fill(outside, 0))
        return torch.multinomial(probabilities, 1, generator=generator).squeeze(-1)


def _pad_to_multiple(features: torch.Tensor, multiple: int) -> torch.Tensor:
    """Repeat the last frame so that the length is a multiple of ``multiple``."""
    extra = -features.shape[1] % multiple
    return torch.cat([features, features[:, -1:].expand(-1, extra, -1)], 1) if extra else features


class AutoregressiveGenerator(nn.Module):
    """Speech and style encoders, a start vector and a causal temporal transformer whose step
    input is style + the embedded previous output, with cross-attention to the aligned speech."""

    def __init__(self, motion_dim: int, feature_dim: int, config: GeneratorConfig, frames_per_step: int):
        super().__init__()
        self.config, self.frames_per_step = config, frames_per_step
        self.speech = SpeechEncoder(feature_dim, config.dim, config.speech_layers, config.heads, config.dropout,
                                    frames_per_step)
        self.style = StyleEncoder(motion_dim, config.dim)
        self.start = nn.Parameter(torch.zeros(config.dim))
        self.temporal = Transformer(config.dim, config.layers, config.heads, config.dropout, causal=True, cross=True)
        self.context = 0  # steps seen at generation; set from the training window

    def teacher_forced(self, batch: dict, previous: torch.Tensor) -> torch.Tensor:
        """Temporal states (B, S, dim) given the embedded true outputs ``previous`` (B, S, dim)."""
        speech = self.speech(batch["features"])
        style = self.style.with_dropout(batch["reference"], self.config.style_dropout, batch.get("has_reference"))
        shifted = torch.cat([self.start.expand(len(previous), 1, -1), previous[:, :-1]], 1)
        return self.temporal(style[:, None] + shifted, speech)

    def rollout(self, features: torch.Tensor, reference: torch.Tensor | None,
                step: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Run the temporal transformer step by step over ``features`` (B, T, F); ``step`` maps the
        state (B, dim) to (the step's output, that output embedded as the next step's input).
        Attention sees the last ``context`` steps, as in training windows. Returns the outputs
        stacked along time (B, S, ...)."""
        speech = self.speech(features)
        style = self.style(reference, len(features))
        previous, inputs, outputs = self.start.expand(len(features), -1), [], []
        for s in range(speech.shape[1]):
            inputs.append(style + previous)
            first = max(0, s + 1 - self.context) if self.context else 0
            window = torch.stack(inputs[first:], 1)
            output, previous = step(self.temporal(window, speech[:, first:s + 1])[:, -1])
            outputs.append(output)
        return torch.stack(outputs, 1)

    def _generate(self, features: torch.Tensor, reference: torch.Tensor | None, sampling: Sampling,
                  generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, features: torch.Tensor, reference: torch.Tensor | None, samples: int = 1,
                 sampling: Sampling = Sampling(), generator: torch.Generator | None = None) -> torch.Tensor:
        """Normalized motion (samples, B, T, D) for features (B, T, F)."""
        n_frames, batch = features.shape[1], len(features)
        features = _pad_to_multiple(features, self.frames_per_step).repeat(samples, 1, 1)
        if reference is not None:
            reference = reference.repeat(samples, 1, 1)
        motion = self._generate(features, reference, sampling, generator)
        return motion[:, :n_frames].unflatten(0, (samples, batch))


class ProbabilisticGenerator(AutoregressiveGenerator):
    """Yang et al. (CVPR 2024): two-stage autoregressive prediction of RVQ codes."""

    def __init__(self, motion_dim: int, feature_dim: int, config: GeneratorConfig, tokenizer: MotionTokenizer):
        if tokenizer.config.factors != 1:
            raise ConfigError("the probabilistic generator predicts one RVQ step per code step: tokenizer.factors must be 1")
        super().__init__(motion_dim, feature_dim, config, tokenizer.frames_per_code)
        self.tokenizer = tokenizer.requires_grad_(False)
        levels, size = tokenizer.rvq.codebooks.shape[:2]
        self.code_embeddings = nn.ModuleList(nn.Embedding(size, config.dim) for _ in range(levels))
        self.level_embedding = nn.Parameter(torch.zeros(levels, config.dim))
        self.depth = Transformer(config.dim, config.depth_layers, config.heads, config.dropout, causal=True)
        self.heads = nn.ModuleList(nn.Linear(config.dim, size) for _ in range(levels))

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """(..., levels) codes -> (..., dim): the sum of their level embeddings."""
        return torch.stack([embedding(codes[..., level]) for level, embedding in enumerate(self.code_embeddings)]).sum(0)

    def depth_logits(self, state: torch.Tensor, codes: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every level given the temporal ``state`` (N, dim) and the codes (N, k) of the
        levels below (teacher forcing: all levels at once; k < levels while sampling)."""
        inputs = [state] + [self.code_embeddings[level](codes[:, level]) for level in range(codes.shape[1])]
        tokens = torch.stack(inputs[:len(self.heads)], 1)  # the last level's codes predict nothing
        tokens = tokens + self.level_embedding[:tokens.shape[1]]
        hidden = self.depth(tokens)
        return [head(hidden[:, level]) for level, head in enumerate(self.heads[:hidden.shape[1]])]

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        self.tokenizer.eval()
        codes = self.tokenizer.encode(batch["motion"])  # (B, S, levels)
        state = self.teacher_forced(batch, self.embed(codes))
        flat_codes = codes.flatten(0, 1)
        logits = self.depth_logits(state.flatten(0, 1), flat_codes)
        losses = [nn.functional.cross_entropy(level_logits.float(), flat_codes[:, level])
                  for level, level_logits in enumerate(logits)]
        accuracy = (logits[0].argmax(-1) == flat_codes[:, 0]).float().mean()
        return torch.stack(losses).mean(), {"level0_nll": float(losses[0].detach()), "level0_accuracy": float(accuracy)}

    def _generate(self, features: torch.Tensor, reference: torch.Tensor | None, sampling: Sampling,
                  generator: torch.Generator | None) -> torch.Tensor:
        def step(state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            codes = state.new_zeros((len(state), 0), dtype=torch.long)
            for level in range(len(self.heads)):
                picked = sampling.pick(self.depth_logits(state, codes)[level], generator)
                codes = torch.cat([codes, picked[:, None]], 1)
            return codes, self.embed(codes)
        return self.tokenizer.decode(self.rollout(features, reference, step))
