"""Training windows from voxmesh shards, streamed with webdataset.

A window is ``length`` consecutive frames of one clip with the audio under them, plus a style
reference (Yang et al., CVPR 2024): a window of another clip of the same speaker whenever the
split holds another clip of that speaker (never the target's own clip then), else a window of
the same clip that does not overlap the target, else none (see :func:`pair_references`). Meshes
enter the models as motion: the clip's vertices minus the clip's mean face (its template, standing in for
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
import os
import random
from collections.abc import Iterable, Iterator

import numpy as np
import torch
import webdataset as wds
from webdataset.utils import pytorch_worker_info

from voxmesh.schemas import (
    SAMPLES_PER_FRAME,
    decode_members,
    pcm_to_float,
    raise_naming_the_shard,
    read_manifest,
    shard_paths,
    storage,
)
from voxmesh.schemas.errors import MissingFileError


@dataclasses.dataclass
class DataConfig:
    dataset: str = ""              # the folder written by `voxmesh build`
    split: str = "train"
    window: int = 32               # frames per training window (1.28 s at 25 fps)
    batch_size: int = 16
    workers: int = 0               # DataLoader worker processes
    shuffle_buffer: int = 256      # windows
    reference_cache: int = 8       # windows cached per speaker to draw style references from
    reference_wait: int = 64       # windows per speaker held back until a valid reference arrives
    stats_shards: int = 64         # shards (spread over the split) read for normalization statistics
    audio_model: str = ""          # a local HuBERT / wav2vec 2.0 folder; empty: log-mel features
    seed: int = 0


REFERENCE_SOURCES = ("other_clip", "same_clip", "none")
"""Where a window's reference came from: another clip of its speaker; its own clip, not
overlapping (only when the split holds no other clip of the speaker); none (no valid window was
seen in time: the model gets its 'no reference' style)."""


@dataclasses.dataclass
class LoaderStats:
    """What the window stages saw; kept on the stage (``stream.pipeline[-1].stats``) of a stream
    read in this process (a DataLoader worker keeps its own copy)."""

    clips: int = 0
    clips_too_short: int = 0
    windows: int = 0
    references: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(REFERENCE_SOURCES, 0))


def _stage_rng(seed: int, name: str) -> random.Random:
    """A random generator distinct per stage, node and loader worker, reproducible from the seed in
    any process: seeded by a string, which ``random`` hashes with SHA-512 (``hash()`` of a string,
    as in webdataset's ``make_seed``, changes with each interpreter's PYTHONHASHSEED)."""
    rank, _, worker, _ = pytorch_worker_info()
    return random.Random(f"{seed}/{name}/{rank}/{worker}")


def cut_windows(items: Iterable[dict], length: int, rng: random.Random | None,
                stats: LoaderStats | None = None) -> Iterator[dict]:
    """Decoded shard items -> windows of ``length`` frames.

    A clip of T frames gives ``T // length`` non-overlapping windows, shifted together by a random
    offset in ``[0, T mod length]`` (offset 0 without ``rng``). Each window is a dict with
    ``key``, ``speaker``, ``topology``, ``start`` (frame), ``motion`` (length, V, 3) float32,
    ``template`` (V, 3) float32 and ``audio`` (length * 640,) float32. Clips shorter than one window give none (counted)."""
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
            yield {"key": meta["key"], "speaker": meta["speaker"], "topology": meta["topology"], "start": start,
                   "motion": mesh[start:start + length] - template,
                   "template": template, "audio": window_audio}


def _overlap(a: dict, b: dict) -> bool:
    return a["key"] == b["key"] and abs(a["start"] - b["start"]) < len(a["motion"])


class _ReferencePairer:
    """The state of :func:`pair_references`: per speaker, up to ``cache_size`` cached windows
    spread over its clips, and the windows still waiting for a valid reference."""

    def __init__(self, rng: random.Random, cache_size: int, wait: int, clips_per_speaker: dict[str, int] | None):
        self.rng, self.cache_size, self.wait, self.clips_per_speaker = rng, cache_size, wait, clips_per_speaker
        self.cache: dict[str, list[dict]] = {}
        self.waiting: dict[str, list[dict]] = {}

    def valid(self, reference: dict, target: dict) -> bool:
        """Another clip when the speaker has one in the split, else a non-overlapping window."""
        if reference["key"] != target["key"]:
            return True
        has_other = (self.clips_per_speaker or {}).get(target["speaker"], 1) > 1
        return not has_other and not _overlap(reference, target)

    def add(self, window: dict) -> Iterator[tuple[dict, dict | None]]:
        """(window, reference) pairs that ``window`` completes: waiting windows it is valid for,
        then itself if a cached window is valid for it (else it waits; the oldest waiting window
        leaves without a reference when more than ``wait`` wait)."""
        speaker = window["speaker"]
        waiting = self.waiting.setdefault(speaker, [])
        for target in [w for w in waiting if self.valid(window, w)]:
            waiting.remove(target)
            yield target, window
        cached = self.cache.setdefault(speaker, [])
        candidates = [w for w in cached if self.valid(w, window)]
        if candidates:
            yield window, self.rng.choice(candidates)
        else:
            waiting.append(window)
            if len(waiting) > self.wait:
                yield waiting.pop(0), None
        cached.append({name: window[name] for name in ("key", "start", "motion")})
        if len(cached) > self.cache_size:  # evict the oldest window of the clip with the most
            counts: dict[str, int] = {}
            for w in cached:
                counts[w["key"]] = counts.get(w["key"], 0) + 1
            largest = max(counts.values())
            cached.pop(next(i for i, w in enumerate(cached) if counts[w["key"]] == largest))

    def flush(self) -> Iterator[tuple[dict, dict | None]]:
        for waiting in self.waiting.values():
            yield from ((window, None) for window in waiting)
        self.waiting.clear()


def pair_references(windows: Iterable[dict], rng: random.Random, cache_size: int, wait: int,
                    stats: LoaderStats | None = None,
                    clips_per_speaker: dict[str, int] | None = None) -> Iterator[dict]:
    """Add ``reference`` (length, V, 3), ``has_reference`` and ``reference_source`` (one of
    :data:`REFERENCE_SOURCES`, counted in ``stats.references``).

    The reference is a window drawn from a per-speaker cache of ``cache_size`` windows, kept
    spread over clips (a new window evicts the oldest window of the clip with the most cached).
    ``clips_per_speaker`` (the split's clips with at least one window, per speaker; from the
    manifest) decides what is valid: for a speaker with another clip, only a window of another
    clip; for a speaker with one clip, a window of the same clip that does not overlap the target.
    A window with no valid candidate yet waits for one (at most ``wait`` per speaker, the oldest
    leaving first) and leaves without a reference (zeros, ``has_reference`` False) when none
    comes. No window is lost."""
    stats = stats or LoaderStats()
    pairer = _ReferencePairer(rng, cache_size, wait, clips_per_speaker)

    def paired(window: dict, reference: dict | None) -> dict:
        source = "none" if reference is None else "other_clip" if reference["key"] != window["key"] else "same_clip"
        stats.references[source] += 1
        return {**window, "reference": np.zeros_like(window["motion"]) if reference is None else reference["motion"],
                "has_reference": reference is not None, "reference_source": source}

    for window in windows:
        yield from (paired(target, reference) for target, reference in pairer.add(window))
    yield from (paired(target, reference) for target, reference in pairer.flush())


def clips_per_speaker(config: DataConfig) -> dict[str, int]:
    """Clips of the split with at least one window, per speaker (from the manifest)."""
    counts: dict[str, int] = {}
    for row in read_manifest(config.dataset, ["split", "speaker", "n_frames"]):
        if row["split"] == config.split and row["n_frames"] >= config.window:
            counts[row["speaker"]] = counts.get(row["speaker"], 0) + 1
    return counts


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
        self.clips_per_speaker = clips_per_speaker(config)

    def __call__(self, items: Iterable[dict]) -> Iterator[dict]:
        cut_rng = _stage_rng(self.config.seed, "cut") if self.shuffle else None
        windows = cut_windows(items, self.config.window, cut_rng, self.stats)
        windows = pair_references(windows, _stage_rng(self.config.seed, "reference"),
                                  self.config.reference_cache, self.config.reference_wait, self.stats,
                                  self.clips_per_speaker)
        if self.shuffle:
            windows = shuffle_windows(windows, _stage_rng(self.config.seed, "shuffle"), self.config.shuffle_buffer)
        yield from windows


def _split_shards(config: DataConfig) -> list[str]:
    if not storage.is_remote(config.dataset) and not os.path.isdir(config.dataset):
        raise MissingFileError(f"data.dataset {config.dataset}: no such folder; give the folder that `voxmesh build` "
                               f"wrote")
    paths = shard_paths(config.dataset, config.split)
    if not paths:
        raise MissingFileError(f"no committed {config.split} shards in {config.dataset}; "
                                f"build a dataset with `voxmesh build` or check data.dataset and data.split")
    return paths


def training_stream(config: DataConfig) -> wds.DataPipeline:
    """Infinite shuffled windows with references (see the module docstring)."""
    return wds.DataPipeline(
        wds.ResampledShards(_split_shards(config), seed=config.seed, deterministic=True),
        wds.tarfile_to_samples(handler=raise_naming_the_shard),
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
        wds.tarfile_to_samples(handler=raise_naming_the_shard),
        wds.map(decode_members),
        _Windows(config, shuffle=False),
    )


def collate(windows: list[dict]) -> dict:
    """Stack a list of windows into a batch of tensors (keys, speakers and reference sources stay lists)."""
    batch: dict[str, torch.Tensor | list[str]] = {
        name: torch.from_numpy(np.stack([w[name] for w in windows]))
        for name in ("motion", "template", "audio", "reference", "has_reference")}
    for name in ("key", "speaker", "reference_source"):
        batch[name] = [w[name] for w in windows]
    return batch


def make_loader(stream: wds.DataPipeline, config: DataConfig) -> torch.utils.data.DataLoader:
    """Batches of ``config.batch_size`` windows, assembled in ``config.workers`` processes."""
    return torch.utils.data.DataLoader(stream, batch_size=config.batch_size, collate_fn=collate,
                                       num_workers=config.workers, persistent_workers=config.workers > 0)
