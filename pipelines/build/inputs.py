"""Finding inputs, naming them, assigning speaker-disjoint splits, and planning the parts that
the build writes (and then packs into shards, see ``packing``).

Inputs come from a folder (searched recursively), a glob, or a listing (``.csv`` or ``.parquet``
with a ``uri`` column and optional ``speaker``, ``video``, ``utterance``, ``split`` columns). URIs
with a scheme (``gs://``, ``s3://``) are listed and read through Beam's file systems, where the
matching Beam extra is installed.

Ids not given by a listing come from the path: ``.../{speaker}/{video}/{utterance}.mp4``
(VoxCeleb2's layout) gives all three; ``{speaker}/{utterance}.mp4`` uses the file stem as video
id; a lone file is its own speaker. The plan is a pure function of the set of inputs and the
config, so a rerun (or a resumed run) over the same inputs assigns every input to the same part.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
import posixpath

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from voxmesh.pipelines.ingest.item import InputItem
from voxmesh.schemas import FailureRecord, Reason, Stage, sanitize_id, shard_name, storage
from voxmesh.schemas.errors import ConfigError

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v")
SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class RawInput:
    """A discovered input before its ids are checked: the URI and the ids as found."""

    uri: str
    ids: tuple[str, str, str]
    split: str = ""


@dataclasses.dataclass(frozen=True)
class PartTask:
    """One part to write: its split, index and the inputs assigned to it, in key order."""

    split: str
    index: int
    items: tuple[InputItem, ...]

    @property
    def name(self) -> str:
        return shard_name(self.split, self.index)


@dataclasses.dataclass(frozen=True)
class SplitFractions:
    train: float = 0.9
    val: float = 0.05
    test: float = 0.05

    def __post_init__(self):
        if min(self.train, self.val, self.test) < 0 or abs(self.train + self.val + self.test - 1) > 1e-6:
            raise ConfigError(f"--split-fractions must be >= 0 and sum to 1, got {self}")


def has_scheme(uri: str) -> bool:
    return "://" in uri


def ids_from_path(uri: str, root: str) -> tuple[str, str, str]:
    path = uri.split("://", 1)[-1]
    relative = posixpath.relpath(path, root.split("://", 1)[-1]) if root else path
    parts = [p for p in relative.replace(os.sep, "/").split("/") if p]
    stem = os.path.splitext(parts[-1])[0]
    if len(parts) >= 3:
        return parts[-3], parts[-2], stem
    if len(parts) == 2:
        return parts[0], stem, "0"
    return stem, stem, "0"


def discover(source: str) -> list[RawInput]:
    """Every input named by ``source`` (a folder, a glob, or a ``.csv``/``.parquet`` listing),
    in URI order, each URI once."""
    if source.endswith((".csv", ".parquet")) and (has_scheme(source) or os.path.isfile(source)):
        raws = _read_listing(source)
    else:
        root, uris = _list_files(source)
        raws = [RawInput(uri, ids_from_path(uri, root)) for uri in uris]
    unique: dict[str, RawInput] = {}
    for raw in raws:
        unique.setdefault(raw.uri, raw)
    return [unique[uri] for uri in sorted(unique)]


def _list_files(pattern: str) -> tuple[str, list[str]]:
    if has_scheme(pattern):
        magic = min((pattern.index(c) for c in "*?[" if c in pattern), default=None)
        root = pattern[:magic].rsplit("/", 1)[0] if magic is not None else pattern.rstrip("/")
        glob_pattern = pattern if magic is not None else f"{root}/**"
        uris = [uri for uri in storage.match(glob_pattern) if magic is not None or uri.lower().endswith(VIDEO_EXTENSIONS)]
        return root, sorted(uris)
    if os.path.isdir(pattern):
        root = os.path.abspath(pattern)
        files = [os.path.join(d, f) for d, _, names in os.walk(root) for f in names
                 if f.lower().endswith(VIDEO_EXTENSIONS)]
    else:
        magic = min((pattern.index(c) for c in "*?[" if c in pattern), default=len(pattern))
        root = os.path.abspath(os.path.dirname(pattern[:magic]) or ".")
        files = [os.path.abspath(f) for f in glob.glob(pattern, recursive=True) if os.path.isfile(f)]
    return root, sorted(files)


def _read_listing(path: str) -> list[RawInput]:
    data = pa.BufferReader(storage.read_bytes(path))
    table = pq.read_table(data) if path.endswith(".parquet") else pacsv.read_csv(data)
    if "uri" not in table.column_names:
        raise ConfigError(f"{path}: a listing needs a 'uri' column (optional: speaker, video, utterance, split)")
    base = path.rsplit("/", 1)[0] if has_scheme(path) else os.path.dirname(os.path.abspath(path))
    raws = []
    for row in table.to_pylist():
        uri = str(row["uri"])
        if not has_scheme(uri):
            uri = f"{base}/{uri}" if has_scheme(base) else os.path.normpath(os.path.join(base, uri))
        from_path = ids_from_path(uri, "")
        ids = tuple(str(row[c]) if row.get(c) not in (None, "") else from_path[i]
                    for i, c in enumerate(("speaker", "video", "utterance")))
        raws.append(RawInput(uri, ids, str(row.get("split") or "")))
    return raws


def identify(raws: list[RawInput]) -> tuple[list[InputItem], list[FailureRecord]]:
    """Check each input's ids; inputs whose ids are unusable, whose URI scheme no installed file
    system reads, whose split is unknown, or whose ids repeat an earlier input's, become failure
    records (``bad_id``, ``unsupported_uri``, ``duplicate_id``)."""
    items, failures, seen = [], [], {}
    for raw in raws:
        def fail(reason: Reason, detail: str, input_id: str = raw.uri) -> None:
            failures.append(FailureRecord(raw.uri, input_id, Stage.DISCOVER.value, reason.value, detail))
        if has_scheme(raw.uri) and not _readable_scheme(raw.uri):
            fail(Reason.UNSUPPORTED_URI, f"{raw.uri}: no installed file system reads this scheme "
                                         f"(install the matching apache-beam extra, e.g. apache-beam[gcp])")
            continue
        if raw.split and raw.split not in SPLITS:
            fail(Reason.BAD_ID, f"{raw.uri}: split {raw.split!r} is not one of {', '.join(SPLITS)}")
            continue
        try:
            item = InputItem(raw.uri, *(sanitize_id(r) for r in raw.ids), split=raw.split)
        except ValueError as error:
            fail(Reason.BAD_ID, f"{raw.uri}: {error}")
            continue
        if item.key_prefix in seen:
            fail(Reason.DUPLICATE_ID, f"{raw.uri}: same ids as {seen[item.key_prefix]}; rename one of them",
                 item.input_id)
            continue
        seen[item.key_prefix] = raw.uri
        items.append(item)
    return items, failures


def _readable_scheme(uri: str) -> bool:
    from apache_beam.io.filesystems import FileSystems
    try:
        FileSystems.get_filesystem(uri)
    except ValueError:
        return False
    return True


def stable_unit(text: str) -> float:
    """A number in [0, 1) that depends only on ``text`` (SHA-1), the same on every machine."""
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "big") / 2.0 ** 64


def split_of(speaker: str, fractions: SplitFractions) -> str:
    """Speaker-disjoint split from a stable hash of the speaker id."""
    u = stable_unit(f"split:{speaker}")
    if u < fractions.train:
        return "train"
    return "val" if u < fractions.train + fractions.val else "test"


def assign_splits(items: list[InputItem], fractions: SplitFractions) -> tuple[dict[str, str], list[FailureRecord]]:
    """The split of every speaker: the source's own where a listing gives one, else by hash.
    A speaker given two different splits by the source is refused (``bad_id``) for all its inputs."""
    given: dict[str, set[str]] = {}
    for item in items:
        if item.split:
            given.setdefault(item.speaker, set()).add(item.split)
    conflicting = {s for s, splits in given.items() if len(splits) > 1}
    failures = [FailureRecord(i.uri, i.input_id, Stage.DISCOVER.value, Reason.BAD_ID.value,
                              f"{i.uri}: speaker {i.speaker} is listed in splits {sorted(given[i.speaker])}; "
                              f"a speaker must be in one split")
                for i in items if i.speaker in conflicting]
    splits = {i.speaker: next(iter(given[i.speaker])) if i.speaker in given else split_of(i.speaker, fractions)
              for i in items if i.speaker not in conflicting}
    return splits, failures


def plan_parts(items: list[InputItem], split_of_speaker: dict[str, str], inputs_per_part: int) -> list[PartTask]:
    """Assign inputs to parts: per split, order inputs by a hash of their id (so that a part, and
    the shard it lands in, mixes speakers), cut into groups of ``inputs_per_part``; inside a part,
    key order. Inputs whose speaker has no split are left out (the caller recorded them as
    failures)."""
    if inputs_per_part < 1:
        raise ConfigError("--inputs-per-part must be at least 1")
    by_split: dict[str, list[InputItem]] = {}
    for item in items:
        if item.speaker in split_of_speaker:
            by_split.setdefault(split_of_speaker[item.speaker], []).append(item)
    tasks = []
    for split in sorted(by_split):
        ordered = sorted(by_split[split], key=lambda i: (stable_unit(f"shard:{i.key_prefix}"), i.key_prefix))
        for index, start in enumerate(range(0, len(ordered), inputs_per_part)):
            group = sorted(ordered[start:start + inputs_per_part], key=lambda i: i.key_order)
            tasks.append(PartTask(split, index, tuple(group)))
    return tasks
