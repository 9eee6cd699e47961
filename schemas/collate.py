"""Batching clips of different lengths: pad to the longest clip of the batch and say which frames
are real. Plain NumPy, so it works with any loader (a torch ``DataLoader`` takes it as
``collate_fn`` and its arrays convert with ``torch.from_numpy``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .sample import SAMPLES_PER_FRAME, STATIC_MEMBERS

# members with a leading time axis of T frames; audio.npy has T * 640 samples
FRAME_MEMBERS = ("mesh.npy", "pose.npy", "lmk2d.npy", "coeffs.npy")


def collate(samples: Sequence[dict]) -> dict:
    """Batch decoded samples (dicts with ``mesh.npy``, ``pose.npy``, ``audio.npy``, ``lmk2d.npy``,
    ``meta.json`` and optionally ``coeffs.npy`` and ``neutral.npy``, as ``webdataset``'s
    ``.decode()`` or :func:`voxmesh.schemas.decode_members` give them).

    Returns ``mesh`` (B, T, V, 3), ``pose`` (B, T, 4, 4), ``lmk2d`` (B, T, L, 2), ``coeffs``
    (B, T, C) and ``neutral`` (B, V, 3) when every sample has them, ``audio`` (B, T * 640) int16, zero-padded after each
    clip's end; ``mask`` (B, T) bool, True on real frames; ``lengths`` (B,) int64 frames;
    ``keys`` and ``meta`` as lists. T is the longest clip of the batch."""
    if not samples:
        raise ValueError("collate needs at least one sample")
    lengths = np.array([len(s["mesh.npy"]) for s in samples], dtype=np.int64)
    n_frames = int(lengths.max())
    batch: dict = {}
    for member in FRAME_MEMBERS:
        if all(member in s for s in samples):
            batch[member[:-4]] = _pad([s[member] for s in samples], n_frames)
    for member in STATIC_MEMBERS:
        if all(member in s for s in samples):
            batch[member[:-4]] = np.stack([s[member] for s in samples])
    batch["audio"] = _pad([s["audio.npy"] for s in samples], n_frames * SAMPLES_PER_FRAME)
    batch["mask"] = np.arange(n_frames)[None, :] < lengths[:, None]
    batch["lengths"] = lengths
    batch["keys"] = [s.get("__key__", s["meta.json"]["key"]) for s in samples]
    batch["meta"] = [s["meta.json"] for s in samples]
    return batch


def _pad(arrays: list[np.ndarray], length: int) -> np.ndarray:
    """Stack ``arrays`` along a new first axis, zero-padding their first axis to ``length``."""
    out = np.zeros((len(arrays), length, *arrays[0].shape[1:]), dtype=arrays[0].dtype)
    for i, array in enumerate(arrays):
        out[i, :len(array)] = array
    return out
