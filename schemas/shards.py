"""Writing and reading the sample tars of a dataset: its shards, and the parts a build packs
into shards (both are written the same way, by :class:`SampleTarWriter`).

A shard is ``shards/{split}-{index:06d}.tar`` plus its stats,
``_meta/shards/{split}-{index:06d}.stats.json`` (:func:`stats_path`: auxiliary files live under
``_meta/``, so that a folder of tars holds data only and no reader takes the stats for samples).
The tar is written to a temporary local file and published whole (a rename on a local disk, one
upload on an object store, see ``storage``); the stats JSON is published only after that, so it is
the shard's commit marker: a tar without its stats is an interrupted write and is ignored. Member
order (sorted keys, then sorted member names) and tar headers (mtime 0, fixed owner and mode) are
fixed, so equal samples give equal bytes.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tarfile
from collections.abc import Iterator, Mapping
from typing import IO

from . import storage
from .sample import SampleMeta
from .storage import write_bytes as write_atomic
from .tables import FailureRecord, manifest_row

__all__ = ["SHARDS_DIR", "SampleTarWriter", "TarStats", "committed_stats", "iter_tar_samples", "shard_name",
           "write_atomic", "write_tar_sample"]

SHARDS_DIR = "shards"
META_DIR = "_meta"
BUILD_RECORD = "build.json"  # under META_DIR: the options of the build that writes the dataset (for --resume)


def stats_path(out_dir: str, folder: str, name: str) -> str:
    """The stats (commit marker) of ``{out_dir}/{folder}/{name}.tar``."""
    return storage.join(out_dir, META_DIR, folder, f"{name}.stats.json")


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}"


@dataclasses.dataclass
class TarStats:
    """The commit record of one sample tar (a shard, or a part of a build): its samples' manifest
    rows and the failures of the inputs that were assigned to it, so that every input is
    accounted for in exactly one shard."""

    shard: str
    split: str
    inputs: list[str]
    samples: list[dict]
    failures: list[dict]
    n_bytes: int

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, indent=1).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> TarStats:
        return cls(**json.loads(data))

    @classmethod
    def read(cls, uri: str) -> TarStats:
        return cls.from_json(storage.read_bytes(uri))


def write_tar_sample(tar: tarfile.TarFile, key: str, members: Mapping[str, bytes]) -> None:
    """Append one sample to ``tar`` as WebDataset lays it out: member ``{key}.{name}`` per entry of
    ``members``, in name order, with fixed headers (mtime 0, mode 0o444, owner ``voxmesh``), so
    equal samples give equal bytes. (Written with ``tarfile`` rather than ``webdataset.TarWriter``,
    whose import loads torch into every build worker.)"""
    for name in sorted(members):
        data = members[name]
        info = tarfile.TarInfo(f"{key}.{name}")
        info.size, info.mtime, info.mode = len(data), 0, 0o444
        info.uname = info.gname = "voxmesh"
        tar.addfile(info, io.BytesIO(data))


class SampleTarWriter:
    """Writes one sample tar (a shard, or a part in ``folder``) and its stats. Samples must come
    in strictly increasing key order.

    Use as a context manager; on a clean exit call :meth:`commit` first, otherwise the temporary
    tar is removed and nothing is left behind.
    """

    def __init__(self, out_dir: str, split: str, index: int, inputs: list[str], folder: str = SHARDS_DIR):
        self.name = shard_name(split, index)
        self.split = split
        self.inputs = list(inputs)
        self.directory = storage.join(out_dir, folder)
        self.tar_path = storage.join(self.directory, f"{self.name}.tar")
        self.stats_path = stats_path(out_dir, folder, self.name)
        self._tmp_path = storage.local_spool(self.tar_path)
        self._file = open(self._tmp_path, "wb")
        self._tar = tarfile.open(fileobj=self._file, mode="w|")
        self._rows: list[dict] = []
        self._failures: list[dict] = []
        self._last_key = ""
        self._committed = False

    def write_members(self, meta: SampleMeta, members: dict[str, bytes]) -> None:
        """Write a sample already encoded by :meth:`Sample.to_members`."""
        if meta.key <= self._last_key:
            raise ValueError(f"shard {self.name}: key {meta.key} is not after {self._last_key}")
        self._last_key = meta.key
        write_tar_sample(self._tar, meta.key, members)
        self._rows.append(manifest_row(meta, self.name))

    def record_failure(self, failure: FailureRecord) -> None:
        self._failures.append(dataclasses.asdict(
            dataclasses.replace(failure, split=self.split, shard=self.name)))

    def commit(self) -> TarStats:
        self._tar.close()
        self._file.close()
        n_bytes = os.path.getsize(self._tmp_path)
        storage.publish(self._tmp_path, self.tar_path)
        stats = TarStats(shard=self.name, split=self.split, inputs=self.inputs,
                           samples=self._rows, failures=self._failures, n_bytes=n_bytes)
        write_atomic(self.stats_path, stats.to_json())
        self._committed = True
        return stats

    def __enter__(self) -> SampleTarWriter:
        return self

    def __exit__(self, *exc) -> None:
        if not self._committed:
            self._tar.close()
            self._file.close()
            if os.path.exists(self._tmp_path):
                os.remove(self._tmp_path)


def committed_stats(out_dir: str, folder: str = SHARDS_DIR) -> list[TarStats]:
    """Stats of every committed shard in ``out_dir/folder``, sorted by shard name."""
    directory = storage.join(out_dir, META_DIR, folder)
    names = [n for n in storage.list_names(directory) if n.endswith(".stats.json")]
    return [TarStats.read(storage.join(directory, name)) for name in names]


def iter_tar_samples(source: str | IO[bytes]) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield ``(key, {member: bytes})`` from a shard tar (a path or URI, or a binary file object)
    in file order, streaming.

    Members of one sample must be adjacent (as :class:`SampleTarWriter` writes them). Raises
    ``tarfile.TarError`` or ``OSError`` for a damaged tar, after the samples read before it.
    """
    if isinstance(source, str):
        with storage.open_read(source) as f:
            yield from iter_tar_samples(f)
        return
    key: str | None = None
    members: dict[str, bytes] = {}
    with tarfile.open(fileobj=source, mode="r|") as tar:
        for info in tar:
            extracted = tar.extractfile(info) if info.isfile() else None
            if extracted is None:
                continue
            sample_key, _, member = info.name.partition(".")
            if sample_key != key:
                if key is not None:
                    yield key, members
                key, members = sample_key, {}
            members[member] = extracted.read()
    if key is not None:
        yield key, members
