"""SyncNet-3D: a small audio encoder (log-mel windows) and a lip-motion encoder trained so that
in-sync windows of speech and 3D lip motion embed close together (after SyncNet, Chung and
Zisserman, ACCV 2016 workshops, extended to meshes as in Learn2Talk and Yang et al., CVPR 2024).

Training is contrastive over offsets: for a lip-motion window at frame t, the candidates are the
audio windows at t + k for k in [-max_shift, max_shift]; a softmax over their cosine similarities
is trained to pick k = 0. A clip is scored with LSE-D and LSE-C and its offset
(:func:`lip_sync_error`), the convention of the talking-face literature. Weights are plain
tensors (``torch.save`` of a state dict, read back with ``weights_only=True``): nothing is
unpickled, nothing downloads.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from voxmesh.metrics.fitting import fit
from voxmesh.metrics.speech_features import N_MELS, LogMel
from voxmesh.schemas import SAMPLES_PER_FRAME, Topology, get_topology, pcm_to_float
from voxmesh.schemas.errors import ConfigError
from voxmesh.schemas.weights import read_tensors

WINDOW = 5  # frames (0.2 s)
class SyncNet3D(nn.Module):
    """Embeds a WINDOW-frame window of audio and of lip motion into a shared unit sphere."""

    def __init__(self, n_lip_vertices: int, dim: int = 64):
        super().__init__()
        self.n_lip_vertices = n_lip_vertices
        self.logmel = LogMel()
        self.audio = nn.Sequential(
            nn.Conv1d(N_MELS, 64, 3, padding=1), nn.ReLU(), nn.Conv1d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(64, dim))
        self.motion = nn.Sequential(
            nn.Flatten(), nn.Linear(WINDOW * n_lip_vertices * 3, 128), nn.ReLU(), nn.Linear(128, dim))

    def embed_audio(self, waveform: torch.Tensor) -> torch.Tensor:
        features = self.logmel(waveform)
        features = (features - features.mean(dim=(1, 2), keepdim=True)) / (features.std(dim=(1, 2), keepdim=True) + 1e-5)
        return nn.functional.normalize(self.audio(features), dim=-1)

    def embed_motion(self, lips: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.motion(lips), dim=-1)


@dataclasses.dataclass
class Clip:
    """One clip's lip motion (T, L, 3; centred on the clip's mean shape, scaled to unit spread)
    and float audio (T * 640,)."""

    lips: np.ndarray
    audio: np.ndarray

    @classmethod
    def from_arrays(cls, mesh: np.ndarray, audio: np.ndarray, topology: Topology) -> Clip:
        lips = mesh[:, topology.lip_idx].astype(np.float32)
        lips = lips - lips.mean(axis=0)
        lips = lips / (lips.std() + 1e-6)
        return cls(lips=lips, audio=pcm_to_float(audio))


def _windows(clip: Clip, starts: np.ndarray, shifts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Lip windows at ``starts`` (B, WINDOW, L, 3) and audio windows at ``starts + shifts``
    (B, K, WINDOW * 640)."""
    lips = torch.from_numpy(np.stack([clip.lips[s:s + WINDOW] for s in starts]))
    audio = torch.from_numpy(np.stack([[clip.audio[(s + k) * SAMPLES_PER_FRAME:(s + k + WINDOW) * SAMPLES_PER_FRAME]
                                        for k in shifts] for s in starts]))
    return lips, audio


def _similarities(model: SyncNet3D, lips: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    batch, candidates = audio.shape[:2]
    motion = model.embed_motion(lips)
    sound = model.embed_audio(audio.reshape(batch * candidates, -1)).reshape(batch, candidates, -1)
    return (sound * motion[:, None]).sum(-1)


def train_syncnet(clips: list[Clip], n_lip_vertices: int, steps: int = 300, batch: int = 32, max_shift: int = 15,
                  seed: int = 0, log_every: int = 0) -> tuple[SyncNet3D, list[float]]:
    """Train on ``clips`` (each at least WINDOW + 2 * max_shift frames); returns the model and
    the loss per step."""
    generator = np.random.default_rng(seed)
    torch.manual_seed(seed)
    usable = [c for c in clips if len(c.lips) >= WINDOW + 2 * max_shift]
    if not usable:
        raise ConfigError(f"no clip has the {WINDOW + 2 * max_shift} frames training needs")
    model = SyncNet3D(n_lip_vertices)
    shifts = np.arange(-max_shift, max_shift + 1)
    temperature = 0.1

    def loss_at(_step: int) -> torch.Tensor:
        clip = usable[generator.integers(len(usable))]
        starts = generator.integers(max_shift, len(clip.lips) - WINDOW - max_shift + 1, size=batch)
        lips, audio = _windows(clip, starts, shifts)
        logits = _similarities(model, lips, audio) / temperature
        return nn.functional.cross_entropy(logits, torch.full((batch,), max_shift))

    losses = fit(model, loss_at, steps, log_every, "SyncNet-3D")
    return model.eval(), losses


@torch.no_grad()
def offset_similarities(model: SyncNet3D, clip: Clip, max_shift: int = 15) -> np.ndarray:
    """Per lip window (every frame with room for every shift), the similarity to the audio at each
    offset -max_shift..max_shift: (n_windows, 2 * max_shift + 1)."""
    shifts = np.arange(-max_shift, max_shift + 1)
    starts = np.arange(max_shift, len(clip.lips) - WINDOW - max_shift + 1)
    if len(starts) == 0:
        raise ValueError(f"the clip is shorter than the {WINDOW + 2 * max_shift} frames scoring needs")
    lips, audio = _windows(clip, starts, shifts)
    return _similarities(model, lips, audio).numpy()


@dataclasses.dataclass(frozen=True)
class LipSync:
    """LSE-D, LSE-C and the offset of one clip (see :func:`lip_sync_error`)."""

    distance: float  # LSE-D: lower is better
    confidence: float  # LSE-C: higher is better
    offset: int  # frames; positive when the audio comes later than the motion


def _window_count(clip: Clip) -> int:
    """Windows starting at frames 0 .. T - WINDOW - 1, as syncnet_python's ``lastframe =
    min_length - 5``."""
    n_windows = min(len(clip.lips), len(clip.audio) // SAMPLES_PER_FRAME) - WINDOW
    if n_windows < 1:
        raise ValueError(f"lip sync needs more than {WINDOW} frames, the clip has {len(clip.lips)}")
    return n_windows


@torch.no_grad()
def motion_embeddings(model: SyncNet3D, clip: Clip) -> torch.Tensor:
    """Lip-motion embeddings of the clip's sync windows, (n, dim)."""
    starts = np.arange(_window_count(clip))
    return model.embed_motion(torch.from_numpy(np.stack([clip.lips[s:s + WINDOW] for s in starts])))


@torch.no_grad()
def audio_embeddings(model: SyncNet3D, clip: Clip) -> torch.Tensor:
    """Audio embeddings of the clip's sync windows, (n, dim)."""
    starts = np.arange(_window_count(clip))
    return model.embed_audio(torch.from_numpy(np.stack(
        [clip.audio[s * SAMPLES_PER_FRAME:(s + WINDOW) * SAMPLES_PER_FRAME] for s in starts])))


def lip_sync_error(motion: torch.Tensor, audio: torch.Tensor, vshift: int = 15) -> LipSync:
    """LSE-D and LSE-C, the talking-face lip-sync convention (Prajwal et al., ACM MM 2020, Wav2Lip,
    computed as syncnet_python's ``SyncNetInstance.evaluate`` does), on SyncNet-3D's embeddings
    (:func:`motion_embeddings`, :func:`audio_embeddings`) in place of SyncNet's: for every lip
    window i and offset k in -vshift..vshift, the Euclidean distance (``pairwise_distance``)
    between lip embedding i and audio embedding i + k, the audio embeddings zero-padded by vshift
    at both ends; the mean over windows per offset; LSE-D is the minimum of those means, LSE-C
    their median minus that minimum. The offset is the minimizing k (syncnet_python prints
    ``vshift - argmin``, the opposite sign)."""
    padded = nn.functional.pad(audio, (0, 0, vshift, vshift))
    width = 2 * vshift + 1
    distances = torch.stack([nn.functional.pairwise_distance(motion[[i]].repeat(width, 1), padded[i:i + width])
                             for i in range(len(motion))])
    mean = distances.mean(dim=0)
    best = int(torch.argmin(mean))
    return LipSync(distance=float(mean[best]), confidence=float(torch.median(mean) - mean[best]), offset=best - vshift)


def save_syncnet(model: SyncNet3D, topology: str, path: str) -> None:
    torch.save({"topology": topology, "n_lip_vertices": model.n_lip_vertices,
                "state_dict": model.state_dict()}, path)


def load_syncnet(path: str) -> tuple[SyncNet3D, Topology]:
    """Load weights written by :func:`save_syncnet`; tensors only (``weights_only=True``)."""
    checkpoint = read_tensors(path, missing="train them with `voxmesh sync train`",
                              keys=("n_lip_vertices", "state_dict", "topology"),
                              kind="SyncNet-3D weights (written by `voxmesh sync train`)")
    model = SyncNet3D(int(checkpoint["n_lip_vertices"]))
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), get_topology(checkpoint["topology"])
