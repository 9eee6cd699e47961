"""Schema v1 of one sample: its members, their dtypes and shapes, and ``meta.json``.

A sample is one clip of one face track: ``T`` frames at 25 fps and ``T * 640`` audio samples at
16 kHz. Members (WebDataset: ``{key}.{member}`` in a tar):

============  ==========  ===================================================================
member        dtype       shape and meaning
============  ==========  ===================================================================
mesh.npy      float32     (T, V, 3) vertices with head pose removed (canonical head frame)
pose.npy      float32     (T, 4, 4) similarity head -> image (scale * rotation, translation)
audio.npy     int16       (T * 640,) 16 kHz mono speech aligned to frame 0
lmk2d.npy     float32     (T, L, 2) image-space landmarks in source pixels
coeffs.npy    float32     (T, C) parametric backends only (expression, jaw)
neutral.npy   float32     (V, 3) parametric backends only: the track's face with zero expression
                          and jaw (its identity), in mesh.npy's frame and units; no time axis
meta.json     utf-8 JSON  :class:`SampleMeta`
============  ==========  ===================================================================
"""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Any

import numpy as np

from .errors import ConfigError, MissingFileError

SCHEMA_VERSION = 1
FPS = 25
SAMPLE_RATE = 16_000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640

MEMBER_DTYPES: dict[str, np.dtype] = {
    "mesh.npy": np.dtype("float32"),
    "pose.npy": np.dtype("float32"),
    "audio.npy": np.dtype("int16"),
    "lmk2d.npy": np.dtype("float32"),
    "coeffs.npy": np.dtype("float32"),
    "neutral.npy": np.dtype("float32"),
}
REQUIRED_MEMBERS = ("mesh.npy", "pose.npy", "audio.npy", "lmk2d.npy", "meta.json")
OPTIONAL_MEMBERS = ("coeffs.npy", "neutral.npy")  # written only by the backends that have them
STATIC_MEMBERS = ("neutral.npy",)  # no leading time axis: the same shape in every sample

# member -> (shape, units and coordinate frame), for the dataset card ({head_frame}: the backend's, from
# dataset.json)
MEMBER_DOCS = {
    "mesh.npy": ("(T, V, 3)", "vertices with head pose removed, in {head_frame}"),
    "pose.npy": ("(T, 4, 4)", "similarity from the head frame to the image: [[s R, t], [0, 1]] maps a mesh vertex to "
                              "source pixels (x right, y down, origin at the top-left corner; z scaled like x)"),
    "audio.npy": ("(T * 640,)", "16 kHz mono speech, PCM (divide by 32768 for [-1, 1)); sample j plays during "
                                "frame j // 640; sample 0 at the clip's start_time"),
    "lmk2d.npy": ("(T, L, 2)", "image landmarks in source pixels (x right, y down, origin at the top-left corner)"),
    "coeffs.npy": ("(T, C)", "parametric backends only: the model's expression and jaw coefficients"),
    "neutral.npy": ("(V, 3)", "parametric backends only: the face track's neutral face (its fitted identity "
                              "with zero expression, zero jaw and no head pose), in mesh.npy's frame and units; "
                              "the same for every clip of a track"),
}

# meta.json field -> meaning, for the dataset card
META_DOCS = {
    "key": "sample key, {speaker}_{video}_{utterance}_{track:03d}_{clip:03d}",
    "split": "train, val or test (speaker-disjoint)",
    "speaker": "speaker id", "video": "video id", "utterance": "utterance id",
    "track": "face track index within the input", "clip": "clip index within the track",
    "source_uri": "input video, relative to the input root recorded in dataset.json",
    "start_time": "s, first frame of the clip on the source video's clock (its first frame is 0)",
    "end_time": "s, end of the clip's last frame on the same clock",
    "n_frames": "T, frames at fps", "n_samples": "audio samples, T * 640",
    "backend": "reconstruction backend", "backend_version": "backend and model version",
    "topology": "mesh topology (V vertices, L landmarks)",
    "confidence_mean": "mean per-frame reconstruction confidence in [0, 1]",
    "lip_motion": "mean speed of the lip vertices in the head frame, cm/s (near 0: no speech)",
    "jitter": "mean second difference of the upper-face vertices, cm per frame^2 (tracking noise)",
    "av_offset": "frames the audio lags the mouth (model-free estimate); null when the estimator cannot tell",
    "av_offset_confidence": "the estimate's peak z-score against chance (metrics/sync.py)",
    "av_offset_ok": "false only for a confident |av_offset| beyond the build's bound (max_av_offset)",
    "av_offset_reason": "why av_offset is null: too_short, not_speech, still_mouth, weak_peak, ambiguous_peak, windows_disagree",
    "audio_start_offset": "s, audio stream start minus first video frame in the source (compensated)",
    "fps": "frames per second (25)", "sample_rate": "audio samples per second (16000)",
    "schema_version": "version of this schema",
}


@dataclasses.dataclass(frozen=True)
class SampleMeta:
    """``meta.json``: everything about a sample that is not an array."""

    key: str
    split: str
    speaker: str
    video: str
    utterance: str
    track: int
    clip: int
    source_uri: str
    start_time: float  # seconds on the source video's clock (its first frame is 0)
    end_time: float
    n_frames: int
    n_samples: int
    backend: str
    backend_version: str
    topology: str
    confidence_mean: float
    lip_motion: float
    jitter: float
    av_offset: int | None       # frames the audio lags the mouth, model-free; None: cannot tell
    av_offset_confidence: float  # the peak's z-score against chance (metrics/sync.py)
    av_offset_ok: bool          # false only for a confident |av_offset| beyond the build's bound
    audio_start_offset: float   # s, audio stream start minus first video frame (compensated)
    av_offset_reason: str | None = None  # why av_offset is None (metrics.sync.Abstain)
    fps: int = FPS
    sample_rate: int = SAMPLE_RATE
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, indent=1).encode("utf-8")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SampleMeta:
        """Build from a parsed ``meta.json``; raises ``ValueError`` naming missing fields."""
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(f.name for f in dataclasses.fields(cls)
                         if f.name not in raw and f.default is dataclasses.MISSING)
        if missing:
            raise ValueError(f"meta.json lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in raw.items() if k in names})


@dataclasses.dataclass
class Sample:
    """One clip's arrays and meta, as written to and read from a shard."""

    meta: SampleMeta
    mesh: np.ndarray
    pose: np.ndarray
    audio: np.ndarray
    lmk2d: np.ndarray
    coeffs: np.ndarray | None = None
    neutral: np.ndarray | None = None

    @property
    def key(self) -> str:
        return self.meta.key

    def to_members(self) -> dict[str, bytes]:
        """Encode as ``{member name: bytes}``; the bytes depend only on the values."""
        arrays = {"mesh.npy": self.mesh, "pose.npy": self.pose, "audio.npy": self.audio,
                  "lmk2d.npy": self.lmk2d}
        if self.coeffs is not None:
            arrays["coeffs.npy"] = self.coeffs
        if self.neutral is not None:
            arrays["neutral.npy"] = self.neutral
        members = {name: encode_npy(np.asarray(a, dtype=MEMBER_DTYPES[name]))
                   for name, a in arrays.items()}
        members["meta.json"] = self.meta.to_json()
        return members

    @classmethod
    def from_members(cls, members: dict[str, bytes]) -> Sample:
        meta = SampleMeta.from_dict(json.loads(members["meta.json"]))
        coeffs, neutral = members.get("coeffs.npy"), members.get("neutral.npy")
        return cls(meta=meta,
                   mesh=decode_npy(members["mesh.npy"]),
                   pose=decode_npy(members["pose.npy"]),
                   audio=decode_npy(members["audio.npy"]),
                   lmk2d=decode_npy(members["lmk2d.npy"]),
                   coeffs=None if coeffs is None else decode_npy(coeffs),
                   neutral=None if neutral is None else decode_npy(neutral))


def pcm_to_float(audio: np.ndarray) -> np.ndarray:
    """``audio.npy``'s int16 PCM as float32 in [-1, 1); float audio is returned as float32."""
    if np.issubdtype(audio.dtype, np.integer):
        return audio.astype(np.float32) / 32768.0
    return audio.astype(np.float32, copy=False)


def float_to_pcm(audio: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] as the int16 PCM of ``audio.npy`` (rounded, clipped)."""
    return np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)


def encode_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def decode_npy(data: bytes) -> np.ndarray:
    """Read ``.npy`` bytes; object arrays are refused (never unpickle shard contents)."""
    return np.load(io.BytesIO(data), allow_pickle=False)


def decode_npy_file(path: str) -> np.ndarray:
    """Read a ``.npy`` file; object arrays are refused, and a file that is no ``.npy`` array is
    one line naming it."""
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise MissingFileError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError) as error:
        raise ConfigError(f"{path}: not a .npy array ({str(error).splitlines()[0]})") from None
