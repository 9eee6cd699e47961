"""Training windows from voxmesh shards, streamed with webdataset.

A window is ``length`` consecutive frames of one clip with the audio under them, plus a window of
another clip of the same speaker (the style reference of Yang et al., CVPR 2024). Meshes enter the
models as motion: the clip's vertices minus the clip's mean face (its template, standing in for
the neutral template that VOCASET-style data provide and voxmesh data do not).

Two streams:

- :func:`training_stream`: shards drawn with replacement (``webdataset.ResampledShards``), seeded
  per node and per loader worker so that every process draws its own sequence; a window shuffle
  buffer on top. Infinite: training counts steps, not epochs. Deterministic for a given seed, so a
  resumed run can replay it to the step it stopped at.
- :func:`evaluation_stream`: every shard once, in order (split between loader workers, not
  between nodes: every node reads the same), windows from the start of each clip. For the
  normalization statistics, which every process of a distributed run computes alike.

Shard members are decoded by :func:`voxmesh.schemas.decode_members` (``.npy`` and ``.json`` only;
nothing is unpickled).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Iterator

import numpy as np
import torch
import webdataset as wds
from webdataset.utils import make_seed, pytorch_worker_info

from voxmesh.schemas import SAMPLES_PER_FRAME, decode_members, pcm_to_float, shard_paths
from voxmesh.schemas.errors import MissingFileError


@dataclasses.dataclass
class DataConfig:
    dataset: str = ""              # the folder written by `voxmesh build`
    split: str = "train"
    window: int = 32               # frames per training window (1.28 s at 25 fps)
    batch_size: int = 16
    workers: int = 0               # DataLoader worker processes
    shuffle_buffer: int = 256      # windows
    reference_cache: int = 8       # windows kept per speaker to draw style references from
    stats_shards: int = 64         # shards (spread over the split) read for normalization statistics
    audio_model: str = ""          # a local HuBERT / wav2vec 2.0 folder; empty: log-mel features
    seed: int = 0


@dataclasses.dataclass
class LoaderStats:
    """What the window stages saw; kept on the stage (``stream.pipeline[-1].stats``) of a stream
    read in this process (a DataLoader worker keeps its own copy)."""

    clips: int = 0
    clips_too_short: int = 0
    windows: int = 0
    self_references: int = 0  # windows whose speaker had no other clip in the cache yet


def _stage_rng(seed: int, name: str) -> random.Random:
    """A random generator distinct per stage, node and loader worker, reproducible from the seed."""
    rank, _, worker, _ = pytorch_worker_info()
    return random.Random(make_seed(seed, name, rank, worker))


def cut_windows(items: Iterable[dict], length: int, rng: random.Random | None,
                stats: LoaderStats | None = None) -> Iterator[dict]:
    """Decoded shard items -> windows of ``length`` frames.

    A clip of T frames gives ``T // length`` non-overlapping windows, shifted together by a random
    offset in ``[0, T mod length]`` (offset 0 without ``rng``). Each window is a dict with
    ``key``, ``speaker``, ``topology``, ``motion`` (length, V, 3) float32, ``template`` (V, 3) float32 and
    ``audio`` (length * 640,) float32. Clips shorter than one window give none (counted)."""
    stats = stats or LoaderStats()
    for item in items:
        meta = item["meta.json"]
        mesh = item["mesh.npy"].astype(np.float32)
        audio = pcm_to_float(item["audio.npy"])
        stats.clips += 1
        count = len(mesh) // length
        if count == 0:
            stats.clips_too_short += 1
            continue
        template = mesh.mean(axis=0)
        offset = rng.randint(0, len(mesh) - count * length) if rng else 0
        for i in range(count):
            start = offset + i * length
            window_audio = audio[start * SAMPLES_PER_FRAME:(start + length) * SAMPLES_PER_FRAME]
            window_audio = np.pad(window_audio, (0, length * SAMPLES_PER_FRAME - len(window_audio)))
            stats.windows += 1
            yield {"key": meta["key"], "speaker": meta["speaker"], "topology": meta["topology"],
                   "motion": mesh[start:start + length] - template,
                   "template": template, "audio": window_audio}


def pair_references(windows: Iterable[dict], rng: random.Random, cache_size: int,
                    stats: LoaderStats | None = None) -> Iterator[dict]:
    """Add ``reference`` (length, V, 3): the motion of a window of another clip of the same speaker,
    drawn from a per-speaker cache of the last ``cache_size`` windows seen. A window whose speaker
    has no other clip in the cache yet is its own reference (counted in ``self_references``)."""
    stats = stats or LoaderStats()
    cache: dict[str, list[dict]] = {}
    for window in windows:
        seen = cache.setdefault(window["speaker"], [])
        others = [w for w in seen if w["key"] != window["key"]]
        if others:
            reference = rng.choice(others)["motion"]
        else:
            reference = window["motion"]
            stats.self_references += 1
        seen.append(window)
        del seen[:-cache_size]
        yield {**window, "reference": reference}


def shuffle_windows(windows: Iterable[dict], rng: random.Random, buffer_size: int) -> Iterator[dict]:
    """Reservoir shuffle: keep ``buffer_size`` windows, emit a random one for each one read."""
    buffer: list[dict] = []
    for window in windows:
        if len(buffer) < buffer_size:
            buffer.append(window)
            continue
        index = rng.randrange(buffer_size)
        yield buffer[index]
        buffer[index] = window
    rng.shuffle(buffer)
    yield from buffer


class _Windows:
    """The window stages as one webdataset pipeline stage (seeded inside the worker that runs it)."""

    def __init__(self, config: DataConfig, shuffle: bool):
        self.config, self.shuffle, self.stats = config, shuffle, LoaderStats()

    def __call__(self, items: Iterable[dict]) -> Iterator[dict]:
        cut_rng = _stage_rng(self.config.seed, "cut") if self.shuffle else None
        windows = cut_windows(items, self.config.window, cut_rng, self.stats)
        windows = pair_references(windows, _stage_rng(self.config.seed, "reference"),
                                  self.config.reference_cache, self.stats)
        if self.shuffle:
            windows = shuffle_windows(windows, _stage_rng(self.config.seed, "shuffle"), self.config.shuffle_buffer)
        yield from windows


def _split_shards(config: DataConfig) -> list[str]:
    paths = shard_paths(config.dataset, config.split)
    if not paths:
        raise MissingFileError(f"no committed {config.split} shards in {config.dataset}; "
                                f"build a dataset with `voxmesh build` or check data.dataset and data.split")
    return paths


def training_stream(config: DataConfig) -> wds.DataPipeline:
    """Infinite shuffled windows with references (see the module docstring)."""
    return wds.DataPipeline(
        wds.ResampledShards(_split_shards(config), seed=config.seed, deterministic=True),
        wds.tarfile_to_samples(),
        wds.map(decode_members),
        _Windows(config, shuffle=True),
    )


def evaluation_stream(config: DataConfig, max_shards: int | None = None) -> wds.DataPipeline:
    """Every window of every clip once (of ``max_shards`` shards spread evenly over the split)."""
    paths = _split_shards(config)
    if max_shards and len(paths) > max_shards:
        paths = [paths[i * len(paths) // max_shards] for i in range(max_shards)]
    return wds.DataPipeline(
        wds.SimpleShardList(paths),
        wds.split_by_worker,
        wds.tarfile_to_samples(),
        wds.map(decode_members),
        _Windows(config, shuffle=False),
    )


def collate(windows: list[dict]) -> dict:
    """Stack a list of windows into a batch of tensors (keys and speakers stay lists)."""
    batch = {name: torch.from_numpy(np.stack([w[name] for w in windows]))
             for name in ("motion", "template", "audio", "reference")}
    batch["key"] = [w["key"] for w in windows]
    batch["speaker"] = [w["speaker"] for w in windows]
    return batch


def make_loader(stream: wds.DataPipeline, config: DataConfig) -> torch.utils.data.DataLoader:
    """Batches of ``config.batch_size`` windows, assembled in ``config.workers`` processes."""
    return torch.utils.data.DataLoader(stream, batch_size=config.batch_size, collate_fn=collate,
                                       num_workers=config.workers, persistent_workers=config.workers > 0)
