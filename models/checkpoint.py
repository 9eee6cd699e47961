"""Checkpoints: one ``torch.save`` file per run holding plain tensors, numbers and strings only,
read back with ``weights_only=True`` (nothing is unpickled), written to a temporary name and
renamed into place so that a killed run never leaves a torn file.

Contents: ``format``, ``config`` (the run config as a dict), ``step``, ``model`` and ``optimizer``
state dicts, ``stats`` (normalization, see :mod:`.normalization`), ``rng`` (torch's CPU generator
state), ``cuda_rng`` (the GPU's, for a run trained on CUDA), ``losses`` (one per step so far).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from voxmesh.schemas.errors import ConfigError, MissingFileError
from voxmesh.schemas.weights import read_tensors

from .audio import PretrainedSpeechModel
from .baselines import CodeTalkerGenerator, FaceFormerGenerator
from .codetalker_vq import CodeTalkerVQ
from .config import FINE_TUNE_SPEECH, RunConfig
from .generators import ProbabilisticGenerator
from .normalization import Stats
from .tokenizer import MotionTokenizer

FORMAT = "voxmesh-model-1"


def save_checkpoint(path: str, **contents) -> None:
    temporary = f"{path}.tmp"
    torch.save({"format": FORMAT, **contents}, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: str) -> dict:
    if not os.path.isfile(path):
        raise MissingFileError(f"{path}: no such checkpoint (a run folder's last.pt, written by `voxmesh train`)")
    contents = read_tensors(path)
    if contents.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a voxmesh checkpoint (format {FORMAT})")
    return contents


def build_model(config: RunConfig, stats: Stats) -> nn.Module:
    """The untrained model a config describes, sized for the stats' motion and feature dimensions.
    With ``data.audio_model`` set, a generator's speech encoder is preceded by the pretrained
    speech model (:class:`~.audio.PretrainedSpeechModel`), fine-tuned for the kinds in
    ``FINE_TUNE_SPEECH``, frozen otherwise."""
    motion_dim, feature_dim = stats.motion_mean.numel(), stats.feature_mean.numel()
    if config.kind == "tokenizer":
        return MotionTokenizer(motion_dim, config.tokenizer)
    if config.kind == "codetalker_vq":
        return CodeTalkerVQ(motion_dim, config.codetalker_vq)
    speech_model = None
    if config.data.audio_model:
        speech_model = PretrainedSpeechModel(config.data.audio_model, config.kind in FINE_TUNE_SPEECH,
                                             stats.feature_mean, stats.feature_std)
        feature_dim = speech_model.dim
    model: FaceFormerGenerator | CodeTalkerGenerator | ProbabilisticGenerator
    if config.kind == "faceformer":
        model = FaceFormerGenerator(motion_dim, feature_dim, config.generator)
    elif config.kind == "codetalker":
        model = CodeTalkerGenerator(motion_dim, feature_dim, config.generator, CodeTalkerVQ(motion_dim, config.codetalker_vq))
    else:
        model = ProbabilisticGenerator(motion_dim, feature_dim, config.generator, MotionTokenizer(motion_dim, config.tokenizer))
        model.context = config.data.window // model.frames_per_step
    if speech_model is not None:
        model.add_module("speech", nn.Sequential(speech_model, model.speech))
    return model


def load_model(path: str) -> tuple[nn.Module, Stats, RunConfig]:
    """A trained model from its checkpoint, on the CPU, in evaluation mode."""
    contents = load_checkpoint(path)
    config = RunConfig.from_dict(contents["config"], source=path)
    stats = Stats.from_dict(contents["stats"])
    model = build_model(config, stats)
    model.load_state_dict(contents["model"])
    return model.eval(), stats, config
