"""Packing parts into the dataset's shards, bounded by samples and by bytes.

How many clips and bytes an input gives is known only once it is processed, so the build first
writes small parts (a few inputs each, one worker each, in ``parts/``) and then packs them: per
split, in part order, consecutive parts join one shard while it stays within ``max_samples`` and
``max_bytes`` (a part over either limit on its own is a shard of its own), and the shard's samples
are the parts' samples merged in key order. A part's inputs and failures move with it, so every
input is still accounted for in exactly one shard. The plan is a pure function of the committed
parts: a resumed run packs the same shards with the same bytes. The copy costs far less than the
reconstruction it follows (a shard is read and written once, sequentially).
"""

from __future__ import annotations

import dataclasses
import heapq
import json
from collections import defaultdict

import apache_beam as beam

from voxmesh.schemas import FailureRecord, SampleMeta, TarStats, SampleTarWriter, committed_stats, iter_tar_samples, storage
from voxmesh.schemas.shards import SHARDS_DIR, shard_name
from voxmesh.schemas.errors import ConfigError, DatasetStateError

PARTS_DIR = "parts"


@dataclasses.dataclass(frozen=True)
class ShardLimits:
    max_samples: int = 10_000
    max_bytes: int = 256 * 2 ** 20

    def __post_init__(self):
        if self.max_samples < 1 or self.max_bytes < 1:
            raise ConfigError(f"shard limits must be at least 1: {self}")


@dataclasses.dataclass(frozen=True)
class PackTask:
    """One shard to write from the named parts (all of one split, in part order)."""

    split: str
    index: int
    parts: tuple[str, ...]

    @property
    def name(self) -> str:
        return shard_name(self.split, self.index)


def plan_packs(parts: list[TarStats], limits: ShardLimits) -> list[PackTask]:
    """Greedy packing of consecutive parts, per split, within ``limits``."""
    by_split: dict[str, list[TarStats]] = defaultdict(list)
    for part in sorted(parts, key=lambda p: p.shard):
        by_split[part.split].append(part)
    tasks = []
    for split in sorted(by_split):
        groups: list[list[str]] = []
        n_samples = n_bytes = 0
        for part in by_split[split]:
            if not groups or (n_samples + len(part.samples) > limits.max_samples
                              or n_bytes + part.n_bytes > limits.max_bytes):
                groups.append([])
                n_samples = n_bytes = 0
            groups[-1].append(part.shard)
            n_samples += len(part.samples)
            n_bytes += part.n_bytes
        tasks += [PackTask(split, index, tuple(group)) for index, group in enumerate(groups)]
    return tasks


def remaining_packs(_, output: str, part_names: list[str], limits: ShardLimits,
                    storage_args: list[str] | None = None) -> list[PackTask]:
    """The packing plan over the planned parts, less the shards already committed. Called once,
    after every part is committed (the argument is the barrier's output)."""
    storage.configure(storage_args)
    planned = set(part_names)
    parts = [s for s in committed_stats(output, PARTS_DIR) if s.shard in planned]
    missing = sorted(planned - {p.shard for p in parts})
    if missing:
        raise DatasetStateError(f"parts {', '.join(missing[:5])} in {output} were not committed; rerun with --resume")
    done = {s.shard for s in committed_stats(output)}
    return [task for task in plan_packs(parts, limits) if task.name not in done]


def pack_shard(output: str, task: PackTask) -> None:
    """Write and commit one shard from its parts (nothing to do if it is already committed)."""
    if storage.exists(storage.join(output, SHARDS_DIR, f"{task.name}.stats.json")):
        return
    parts = [TarStats.read(storage.join(output, PARTS_DIR, f"{name}.stats.json")) for name in task.parts]
    inputs = [uri for part in parts for uri in part.inputs]
    with SampleTarWriter(output, task.split, task.index, inputs) as writer:
        streams = [iter_tar_samples(storage.join(output, PARTS_DIR, f"{name}.tar")) for name in task.parts]
        for _, members in heapq.merge(*streams, key=lambda sample: sample[0]):
            writer.write_members(SampleMeta.from_dict(json.loads(members["meta.json"])), members)
        for part in parts:
            for record in part.failures:
                writer.record_failure(FailureRecord(**record))
        writer.commit()


class PackShard(beam.DoFn):
    def __init__(self, output: str, storage_args: list[str] | None = None):
        self.output = output
        self.storage_args = storage_args

    def setup(self):
        storage.configure(self.storage_args)

    def process(self, task: PackTask):
        pack_shard(self.output, task)
        beam.metrics.Metrics.counter("voxmesh", "shards").inc()
        yield task.name


def remove_parts(output: str) -> None:
    """Drop the parts once every shard is committed (they are temporary)."""
    storage.remove_tree(storage.join(output, PARTS_DIR))
