"""Reading a voxmesh dataset back, streaming, through WebDataset."""

from __future__ import annotations

import json
import os
from typing import Iterator

import webdataset as wds

from .sample import Sample, SampleMeta, decode_npy
from .shards import SHARDS_DIR, committed_stats


def shard_paths(out_dir: str, split: str | None = None) -> list[str]:
    """Paths of the committed shard tars of ``split`` (all splits when None), sorted."""
    return [os.path.join(out_dir, SHARDS_DIR, f"{s.shard}.tar") for s in committed_stats(out_dir)
            if split is None or s.split == split]


def open_split(out_dir: str, split: str | None = None) -> wds.WebDataset:
    """A ``webdataset.WebDataset`` over the committed shards, decoding ``.npy`` and ``.json``.

    Each item is a dict with ``__key__``, ``mesh.npy``, ``pose.npy``, ``audio.npy``,
    ``lmk2d.npy``, ``meta.json`` (and ``coeffs.npy`` when present) as arrays and a dict.
    """
    paths = shard_paths(out_dir, split)
    if not paths:
        raise FileNotFoundError(f"no committed shards{' of split ' + split if split else ''} "
                                f"under {out_dir}; run `voxmesh build` first")
    return wds.WebDataset(paths, shardshuffle=False, empty_check=False).map(decode_members)


def decode_members(item: dict) -> dict:
    """Decode a raw WebDataset item's ``.npy`` and ``.json`` members; other members stay bytes.

    Used instead of webdataset's default decoders, which unpickle ``.pyd``/``.pickle`` members:
    shards may come from anywhere, and nothing in them is ever unpickled."""
    decoded = {}
    for name, value in item.items():
        if name.endswith(".npy"):
            value = decode_npy(value)
        elif name.endswith(".json"):
            value = json.loads(value)
        decoded[name] = value
    return decoded


def iter_samples(out_dir: str, split: str | None = None) -> Iterator[Sample]:
    """Yield :class:`Sample` objects from the committed shards, in shard and key order."""
    for item in open_split(out_dir, split):
        yield Sample(meta=SampleMeta.from_dict(item["meta.json"]), mesh=item["mesh.npy"],
                     pose=item["pose.npy"], audio=item["audio.npy"], lmk2d=item["lmk2d.npy"],
                     coeffs=item.get("coeffs.npy"))
