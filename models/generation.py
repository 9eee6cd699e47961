"""``voxmesh generate``: meshes from speech with a trained generator.

- one audio file (any format FFmpeg reads; resampled to 16 kHz mono) with an optional reference
  clip (a (T, V, 3) ``.npy`` mesh sequence of the target speaker, e.g. a sample's ``mesh.npy``)
  -> one ``.npy`` of shape (N, T, V, 3), or (T, V, 3) with ``--average``;
- every sample of a dataset split -> ``{key}.npy`` per clip in a folder, the input of
  ``voxmesh eval``. Each clip's style reference is another clip of the same speaker in the split
  (none when the speaker has one clip). Its template, in this order: (1) that reference clip's
  mean face; (2) else the target sample's ``neutral.npy`` when the backend wrote one (parametric
  backends: the track's fitted identity with zero expression and jaw, so the speaker's face shape
  and none of the clip's motion); (3) else the topology's template (``Topology.template``). Never
  the target clip's own mean face, which carries its average jaw opening.
  ``templates/{key}.npy`` records each clip's template for ``voxmesh eval`` (FDD is measured from
  the same face).

Meshes are the template plus the generated motion, in the dataset's units and canonical head frame.
"""

from __future__ import annotations

import json
import os
from typing import Protocol, cast

import numpy as np
import torch

from voxmesh.models.audio import audio_features
from voxmesh.models.checkpoint import load_model
from voxmesh.models.config import TOKENIZER_KIND
from voxmesh.models.generators import Sampling
from voxmesh.schemas import (
    SAMPLES_PER_FRAME,
    get_topology,
    is_valid_key,
    iter_samples,
    load_samples,
    pcm_to_float,
)
from voxmesh.schemas.errors import ConfigError, DatasetStateError
from voxmesh.schemas.reader import REFERENCE_COLUMNS, read_manifest, reference_candidates, reference_key


class Generates(Protocol):
    """What generation needs of a generator model."""

    def generate(self, features: torch.Tensor, reference: torch.Tensor | None, samples: int,
                 sampling: Sampling, generator: torch.Generator | None) -> torch.Tensor: ...


class MotionGenerator:
    """A trained generator with its normalization and speech features, ready to generate on
    ``device`` (``cpu`` or ``cuda``). A seed gives the same samples on the same kind of device;
    CUDA draws from another random stream than the CPU, so its samples are others."""

    def __init__(self, checkpoint: str, device: str = "cpu"):
        if torch.device(device).type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("--device cuda, but no CUDA device is visible to torch; generate with --device cpu")
        self.device = torch.device(device)
        model, stats, self.config = load_model(checkpoint)
        if self.config.kind in TOKENIZER_KIND.values():
            raise ConfigError(f"{checkpoint} is a stage-1 model ({self.config.kind}); generate with a generator "
                              f"checkpoint (probabilistic, codetalker or faceformer)")
        self.model = cast(Generates, model.to(self.device))
        self.stats = stats.to(self.device)
        self.features = audio_features(self.config.data.audio_model).to(self.device)
        self.reference_frames = self.config.data.window

    def reference_motion(self, reference: np.ndarray) -> torch.Tensor:
        """A reference clip (T, V, 3) -> its first window of normalized motion (1, L, D)."""
        mesh = torch.from_numpy(np.asarray(reference, dtype=np.float32)).to(self.device)
        motion = mesh - mesh.mean(0)
        return self.stats.normalize_motion(motion[None, :self.reference_frames])

    @torch.no_grad()
    def __call__(self, audio: np.ndarray, reference: np.ndarray | None = None, template: np.ndarray | None = None,
                 samples: int = 1, sampling: Sampling = Sampling(), seed: int = 0) -> np.ndarray:
        """Meshes (samples, T, V, 3), T = audio length in 25 fps frames, for float 16 kHz ``audio``.
        The template is ``template``, else the reference's mean face, else the topology's neutral
        template."""
        n_frames = int(round(len(audio) / SAMPLES_PER_FRAME))
        if n_frames < 1:
            raise ConfigError("the audio is shorter than one frame (40 ms)")
        waveform = torch.from_numpy(np.asarray(audio, dtype=np.float32))[None].to(self.device)
        features = self.stats.normalize_features(self.features(waveform, n_frames))
        style = self.reference_motion(reference) if reference is not None else None
        generator = torch.Generator(self.device).manual_seed(seed)
        motion = self.model.generate(features, style, samples, sampling, generator)[:, 0]
        if template is None:
            template = reference.mean(0) if reference is not None else get_topology(self.stats.topology).template
        meshes = self.stats.denormalize_motion(motion).cpu().numpy() + np.asarray(template, np.float32)
        return meshes.astype(np.float32)


def generate_for_split(generator: MotionGenerator, dataset: str, split: str | None, out_dir: str,
                       samples: int, sampling: Sampling, seed: int) -> dict:
    """``{key}.npy`` (samples, T, V, 3) for every clip of ``split``; returns what was done."""
    topology = generator.stats.topology
    candidates = reference_candidates(read_manifest(dataset, REFERENCE_COLUMNS), split)
    references = {key: (sample.mesh[:generator.reference_frames], sample.mesh.mean(0))
                  for key, sample in load_samples(dataset, [k for keys in candidates.values() for k in keys]).items()}
    fallback = get_topology(topology).template
    done: dict[str, str | None] = {}
    for index, sample in enumerate(iter_samples(dataset, split)):
        if not is_valid_key(sample.key):  # keys name files here
            raise DatasetStateError(f"{dataset}: sample key {sample.key!r} is not a valid voxmesh key; run `voxmesh validate`")
        if sample.meta.topology != topology:
            raise ConfigError(f"{sample.key} has topology {sample.meta.topology}; the model was trained on {topology}")
        reference_of = reference_key(candidates, sample.meta.speaker, sample.key)
        if reference_of:
            reference, template = references[reference_of]
        else:  # the target's identity only (no motion of the clip), else the topology's template
            reference, template = None, fallback if sample.neutral is None else sample.neutral
        meshes = generator(pcm_to_float(sample.audio), reference,
                           template=template, samples=samples, sampling=sampling, seed=seed + index)
        if not done:  # not before the first clip: a split may have no shards
            os.makedirs(os.path.join(out_dir, "templates"), exist_ok=True)
        np.save(os.path.join(out_dir, f"{sample.key}.npy"), meshes[:, :len(sample.mesh)])
        np.save(os.path.join(out_dir, "templates", f"{sample.key}.npy"), np.asarray(template, np.float32))
        done[sample.key] = reference_of
    summary = {"clips": len(done), "samples": samples, "temperature": sampling.temperature, "top_p": sampling.top_p,
               "seed": seed, "device": generator.device.type, "references": done}
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "generation.json"), "w") as f:
        json.dump(summary, f, indent=1, sort_keys=True)
    return summary
