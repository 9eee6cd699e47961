"""A speaking-style recognition network for evaluation (after Yang et al., CVPR 2024, who train a
speaker-style recognition network and report how often generated motion is recognized as the style
of its reference speaker).

The network classifies the speakers of the training split from windows of facial *motion*: the
lip and upper-face vertices minus the clip's mean face (so identity shape, which a generated clip
takes from its template, says nothing), over STYLE_WINDOW frames, scaled by one training-set
constant. Its penultimate layer (unit length, ``DIM``) is the style embedding: the Frechet distance
is taken on it, and style matching compares a clip's mean embedding with each speaker's.

Style matching (:func:`style_matching`): a generated clip counts as matched when, among the
speakers of the evaluated clips, its embedding is nearest (cosine) to the mean embedding of its
reference speaker's *other* ground-truth clips; speakers unseen in training work the same way.
Weights are plain tensors (``weights_only=True``); nothing downloads.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from voxmesh.metrics.fitting import fit
from voxmesh.schemas import Topology, get_topology
from voxmesh.schemas.errors import ConfigError
from voxmesh.schemas.weights import read_tensors

STYLE_WINDOW = 25  # frames (1 s)
HOP = 5  # frames between windows at evaluation
DIM = 32


def style_vertices(topology: Topology) -> np.ndarray:
    """The vertices the style network reads: lips and upper face."""
    return np.union1d(topology.lip_idx, topology.upper_face_idx)


def clip_motion(mesh: np.ndarray, topology: Topology) -> np.ndarray:
    """(T, K, 3) motion of the style vertices: the mesh minus the clip's mean face."""
    points = np.asarray(mesh, dtype=np.float32)[:, style_vertices(topology)]
    return points - points.mean(axis=0)


class StyleNet(nn.Module):
    """Temporal convolutions over a STYLE_WINDOW-frame motion window -> a DIM embedding on the unit
    sphere -> logits over the training speakers."""

    def __init__(self, n_inputs: int, n_speakers: int, hidden: int = 128):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv1d(n_inputs, hidden, 3, padding=1), nn.ReLU(), nn.Conv1d(hidden, hidden, 3, stride=2, padding=1),
            nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(hidden, DIM))
        self.classifier = nn.Linear(DIM, n_speakers)

    def embed(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, STYLE_WINDOW, K, 3) motion windows -> (B, DIM) unit embeddings."""
        flat = windows.flatten(2).transpose(1, 2)
        return nn.functional.normalize(self.encoder(flat), dim=-1)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(windows))


@dataclasses.dataclass
class StyleModel:
    """A trained style network with what it needs to read meshes: the topology, the motion scale
    and the training speakers (class order)."""

    net: StyleNet
    topology: Topology
    scale: float
    speakers: list[str]

    @torch.no_grad()
    def window_embeddings(self, mesh: np.ndarray) -> np.ndarray:
        """(n, DIM) embeddings of the windows every HOP frames of one clip (ValueError when the
        clip is shorter than STYLE_WINDOW frames)."""
        motion = clip_motion(mesh, self.topology) / self.scale
        if len(motion) < STYLE_WINDOW:
            raise ValueError(f"style needs {STYLE_WINDOW} frames, the clip has {len(motion)}")
        starts = range(0, len(motion) - STYLE_WINDOW + 1, HOP)
        windows = torch.from_numpy(np.stack([motion[s:s + STYLE_WINDOW] for s in starts]))
        return self.net.embed(windows).numpy()



def clip_style(window_embeddings: np.ndarray) -> np.ndarray:
    """A clip's style: the normalized mean of its window embeddings, (DIM,)."""
    mean = window_embeddings.mean(axis=0)
    return mean / (np.linalg.norm(mean) + 1e-12)


def train_style(meshes: list[np.ndarray], speakers: list[str], topology: Topology, steps: int = 300,
                batch: int = 32, seed: int = 0, log_every: int = 0) -> tuple[StyleModel, list[float]]:
    """Train speaker classification on the clips ``meshes`` (T, V, 3) of ``speakers``; needs at
    least two speakers with a clip of STYLE_WINDOW frames (ConfigError naming what is missing)."""
    usable = [(clip_motion(m, topology), s) for m, s in zip(meshes, speakers, strict=True) if len(m) >= STYLE_WINDOW]
    names = sorted({s for _, s in usable})
    if len(names) < 2:
        raise ConfigError(f"the style network needs clips of {STYLE_WINDOW}+ frames from at least 2 speakers; "
                          f"the split has {len(names)} such speaker(s) ({len(meshes)} clips): use a larger split")
    scale = float(np.sqrt(np.mean([(m ** 2).mean() for m, _ in usable]))) + 1e-8
    generator = np.random.default_rng(seed)
    torch.manual_seed(seed)
    net = StyleNet(len(style_vertices(topology)) * 3, len(names))
    by_speaker = {name: [m for m, s in usable if s == name] for name in names}

    def loss_at(_step: int) -> torch.Tensor:
        labels = generator.integers(len(names), size=batch)  # speakers drawn evenly
        windows = []
        for label in labels:
            clips = by_speaker[names[label]]
            motion = clips[generator.integers(len(clips))]
            start = generator.integers(len(motion) - STYLE_WINDOW + 1)
            windows.append(motion[start:start + STYLE_WINDOW] / scale)
        return nn.functional.cross_entropy(net(torch.from_numpy(np.stack(windows))), torch.from_numpy(labels))

    losses = fit(net, loss_at, steps, log_every, "style")
    return StyleModel(net.eval(), topology, scale, names), losses


def style_matching(embeddings: dict[str, np.ndarray], truth: dict[str, np.ndarray],
                   speaker_of: dict[str, str]) -> tuple[float, int]:
    """(accuracy, clips scored): the share of clips ``embeddings`` (key -> clip embedding of the
    generated clip) whose nearest speaker is their own, speakers represented by the mean embedding
    of their ground-truth clips ``truth`` (the target clip's own truth left out of its speaker's
    mean). A clip is scored when its speaker has another clip; ValueError when fewer than two
    speakers or no clip can be scored."""
    speakers = sorted({speaker_of[key] for key in truth})
    if len(speakers) < 2:
        raise ValueError(f"style matching needs clips of at least 2 speakers, the split has {len(speakers)}")
    sums = {s: np.sum([truth[k] for k in truth if speaker_of[k] == s], axis=0) for s in speakers}
    counts = {s: sum(speaker_of[k] == s for k in truth) for s in speakers}
    hits = []
    for key, embedding in embeddings.items():
        own = speaker_of[key]
        if counts[own] - (key in truth) < 1:
            continue
        centroids = {s: sums[s] - (truth[key] if s == own and key in truth else 0) for s in speakers}
        scores = {s: float(embedding @ c / (np.linalg.norm(c) + 1e-12)) for s, c in centroids.items()}
        hits.append(max(scores, key=lambda s: scores[s]) == own)
    if not hits:
        raise ValueError("style matching needs a speaker with two clips or more among the evaluated clips")
    return float(np.mean(hits)), len(hits)


def save_style(model: StyleModel, path: str) -> None:
    torch.save({"topology": model.topology.name, "scale": model.scale, "speakers": model.speakers,
                "n_inputs": model.net.encoder[0].in_channels, "state_dict": model.net.state_dict()}, path)


def load_style(path: str) -> StyleModel:
    """Load weights written by :func:`save_style`; tensors and plain values only."""
    checkpoint = read_tensors(path, missing="train them with `voxmesh style train`",
                              keys=("n_inputs", "speakers", "state_dict", "topology", "scale"),
                              kind="style network weights (written by `voxmesh style train`)")
    net = StyleNet(int(checkpoint["n_inputs"]), len(checkpoint["speakers"]))
    net.load_state_dict(checkpoint["state_dict"])
    return StyleModel(net.eval(), get_topology(checkpoint["topology"]), float(checkpoint["scale"]),
                      list(checkpoint["speakers"]))
