"""Packing parts into the dataset's shards, bounded by samples and by bytes.

How many clips and bytes an input gives is known only once it is processed, so the build first
writes small parts (a few inputs each, one worker each, in ``parts/``) and then packs them: per
split, in part order, consecutive groups of parts (parts of one group, split only so that every
worker has work, always land together) join one shard while it stays within ``max_samples`` and
``max_bytes`` (a group over either limit on its own is a shard of its own), and the shard's
samples are the parts' samples merged in key order, its inputs and failures sorted by URI. A
part's inputs and failures move with it, so every input is still accounted for in exactly one
shard. The plan is a pure function of the committed parts and their groups, and a shard's bytes
do not depend on how its groups were split into parts: a resumed run, or a run with another
worker count, packs the same shards with the same bytes. The copy costs far less than the
reconstruction it follows (a shard is read and written once, sequentially).
"""

from __future__ import annotations

import dataclasses
import heapq
import json
from collections import defaultdict

import apache_beam as beam

from voxmesh.schemas import FailureRecord, SampleMeta, SampleTarWriter, TarStats, committed_stats, iter_tar_samples, storage
from voxmesh.schemas.errors import ConfigError, DatasetStateError
from voxmesh.schemas.shards import META_DIR, SHARDS_DIR, shard_name, stats_path

PARTS_DIR = "parts"


@dataclasses.dataclass(frozen=True)
class ShardLimits:
    max_samples: int = 10_000
    max_bytes: int = 256 * 2 ** 20

    def __post_init__(self):
        if self.max_samples < 1 or self.max_bytes < 1:
            raise ConfigError(f"--shard-max-samples {self.max_samples} / --shard-max-mb {self.max_bytes / 2 ** 20:g}: "
                              f"a shard must be allowed at least one sample and one byte")


@dataclasses.dataclass(frozen=True)
class PackTask:
    """One shard to write from the named parts (all of one split, in part order)."""

    split: str
    index: int
    parts: tuple[str, ...]

    @property
    def name(self) -> str:
        return shard_name(self.split, self.index)


def plan_packs(parts: list[TarStats], limits: ShardLimits, groups: dict[str, int] | None = None) -> list[PackTask]:
    """Greedy packing of consecutive groups of parts, per split, within ``limits``. ``groups``
    maps a part's name to its group (its own when absent)."""
    units: dict[str, list[list[TarStats]]] = defaultdict(list)  # per split, the parts of each group
    previous: tuple[str, object] | None = None
    for part in sorted(parts, key=lambda p: p.shard):
        group = (part.split, (groups or {}).get(part.shard, part.shard))
        if group != previous:
            units[part.split].append([])
        units[part.split][-1].append(part)
        previous = group
    tasks = []
    for split in sorted(units):
        shards: list[list[str]] = []
        n_samples = n_bytes = 0
        for unit in units[split]:
            unit_samples, unit_bytes = sum(len(p.samples) for p in unit), sum(p.n_bytes for p in unit)
            if not shards or (n_samples + unit_samples > limits.max_samples or n_bytes + unit_bytes > limits.max_bytes):
                shards.append([])
                n_samples = n_bytes = 0
            shards[-1] += [p.shard for p in unit]
            n_samples += unit_samples
            n_bytes += unit_bytes
        tasks += [PackTask(split, index, tuple(names)) for index, names in enumerate(shards)]
    return tasks


def remaining_packs(_, output: str, part_names: list[str], limits: ShardLimits,
                    groups: dict[str, int] | None = None, storage_args: list[str] | None = None) -> list[PackTask]:
    """The packing plan over the planned parts (in their ``groups``), less the shards already
    committed. Called once, after every part is committed (the argument is the barrier's output)."""
    storage.configure(storage_args)
    planned = set(part_names)
    parts = [s for s in committed_stats(output, PARTS_DIR) if s.shard in planned]
    missing = sorted(planned - {p.shard for p in parts})
    if missing:
        raise DatasetStateError(f"parts {', '.join(missing[:5])} in {output} were not committed; rerun with --resume")
    done = {s.shard for s in committed_stats(output)}
    return [task for task in plan_packs(parts, limits, groups) if task.name not in done]


def pack_shard(output: str, task: PackTask) -> None:
    """Write and commit one shard from its parts (nothing to do if it is already committed)."""
    if storage.exists(stats_path(output, SHARDS_DIR, task.name)):
        return
    parts = [TarStats.read(stats_path(output, PARTS_DIR, name)) for name in task.parts]
    inputs = sorted(uri for part in parts for uri in part.inputs)
    with SampleTarWriter(output, task.split, task.index, inputs) as writer:
        streams = [iter_tar_samples(storage.join(output, PARTS_DIR, f"{name}.tar")) for name in task.parts]
        for _, members in heapq.merge(*streams, key=lambda sample: sample[0]):
            writer.write_members(SampleMeta.from_dict(json.loads(members["meta.json"])), members)
        records = [record for part in parts for record in part.failures]
        for record in sorted(records, key=lambda r: (r["source_uri"], r["stage"], r["reason"], r["detail"])):
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
    storage.remove_tree(storage.join(output, META_DIR, PARTS_DIR))
