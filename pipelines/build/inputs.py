"""Finding inputs, naming them, assigning speaker-disjoint splits, and planning the parts that
the build writes (and then packs into shards, see ``packing``).

Inputs come from a folder (searched recursively), a glob, or a listing (``.csv`` or ``.parquet``
with a ``uri`` column and optional ``speaker``, ``video``, ``utterance``, ``split`` columns). URIs
with a scheme (``gs://``, ``s3://``) are listed and read through Beam's file systems, where the
matching Beam extra is installed.

Ids not given by a listing come from the path: ``.../{speaker}/{video}/{utterance}.mp4``
(VoxCeleb2's layout) gives all three; ``{speaker}/{utterance}.mp4`` uses the file stem as video
id; a lone file is its own speaker. The plan is a pure function of the set of inputs and the
config (and the least number of parts asked for, the worker count), so a rerun (or a resumed run)
over the same inputs assigns every input to the same part. Parts are sized by the frames their
inputs are expected to give (:func:`expected_frames`), and the groups of parts that packing keeps
together do not depend on the worker count, so neither do the shards.
"""

from __future__ import annotations

import bisect
import dataclasses
import glob
import hashlib
import itertools
import logging
import math
import os
import posixpath
from collections import Counter
from collections.abc import Iterator

import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from voxmesh.pipelines.ingest.item import InputItem
from voxmesh.pipelines.ingest.probe import header_duration
from voxmesh.schemas import FPS, FailureRecord, Reason, Stage, TarStats, sanitize_id, shard_name, storage
from voxmesh.schemas.errors import ConfigError
from voxmesh.schemas.tables import arrow_reader

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v")
SPLITS = ("train", "val", "test")
UNKNOWN_FRAMES = 200  # an input of unknown duration counts as 8 s, about a VoxCeleb2 utterance


@dataclasses.dataclass(frozen=True)
class RawInput:
    """A discovered input before its ids are checked: the URI and the ids as found."""

    uri: str
    ids: tuple[str, str, str]
    split: str = ""
    duration: float = 0.0  # seconds, from a listing's duration column (0: not given)


@dataclasses.dataclass(frozen=True)
class PartTask:
    """One part to write: its split, index and the inputs assigned to it, in key order. Parts of
    the same ``group`` (an index within the split) always land in the same shard."""

    split: str
    index: int
    items: tuple[InputItem, ...]
    group: int = 0

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
            raise ConfigError(f"--split-fractions {self.train},{self.val},{self.test}: expected three fractions "
                              f">= 0 that sum to 1, e.g. 0.9,0.05,0.05")


def ids_from_path(uri: str, root: str) -> tuple[str, str, str]:
    path = uri.split("://", 1)[-1]
    relative = posixpath.relpath(path, root.split("://", 1)[-1]) if root else path
    parts = [p for p in relative.replace(os.sep, "/").split("/") if p]
    stem = os.path.splitext(parts[-1])[0] if parts else ""  # no name at all: a bad_id failure
    if len(parts) >= 3:
        return parts[-3], parts[-2], stem
    if len(parts) == 2:
        return parts[0], stem, "0"
    return stem, stem, "0"


def input_root(source: str, uris: list[str]) -> str:
    """The folder the data's URIs are relative to: the folder (or a glob's folder) named by
    ``source``, or for a listing the deepest folder that holds every listed URI."""
    if is_listing(source):
        return common_folder(uris)
    return _list_root(source)


def common_folder(uris: list[str]) -> str:
    """The deepest folder (or ``scheme://bucket/...`` prefix) that holds every URI; empty when
    there is none (several schemes or buckets)."""
    if not uris:
        return ""
    schemes = {storage.scheme(uri) for uri in uris}
    if len(schemes) > 1:
        return ""
    scheme = schemes.pop()
    paths = [uri.split("://", 1)[1] if scheme else uri for uri in uris]
    folder = posixpath.commonpath([posixpath.dirname(p) for p in paths]) if scheme else \
        os.path.commonpath([os.path.dirname(p) for p in paths])
    if not scheme:
        return folder
    return f"{scheme}://{folder}" if folder else ""


def relative_to(uri: str, root: str) -> str:
    """``uri`` relative to ``root`` (posix separators); ``uri`` itself when it is not under it."""
    if root and uri.startswith(root.rstrip("/") + ("/" if storage.is_remote(root) else os.sep)):
        return uri[len(root.rstrip("/")) + 1:].replace(os.sep, "/")
    return uri


def discover(source: str) -> list[RawInput]:
    """Every input named by ``source`` (a folder, a glob, or a ``.csv``/``.parquet`` listing),
    in URI order, each URI once."""
    if is_listing(source):
        raws = _read_listing(source)
    else:
        root, uris = _list_files(source)
        raws = [RawInput(uri, ids_from_path(uri, root)) for uri in uris]
    unique: dict[str, RawInput] = {}
    for raw in raws:
        unique.setdefault(raw.uri, raw)
    return [unique[uri] for uri in sorted(unique)]


def nothing_found(source: str) -> str:
    """Why ``source`` named no input, for a build that refuses to run without one."""
    if not storage.is_remote(source) and _glob_start(source) is None and not os.path.exists(source):
        return f"--input {source}: no such file or folder"
    if is_listing(source):
        return f"--input {source}: the listing has no rows"
    kinds = " ".join(VIDEO_EXTENSIONS)
    return (f"--input {source}: no videos found (a folder is searched recursively for {kinds}; "
            f"a glob must match files); check the path")


def is_listing(source: str) -> bool:
    return source.endswith((".csv", ".parquet")) and (storage.is_remote(source) or os.path.isfile(source))


def _glob_start(pattern: str) -> int | None:
    """Where the glob part of ``pattern`` starts (its first ``*``, ``?`` or ``[``); None for a plain path."""
    return min((pattern.index(c) for c in "*?[" if c in pattern), default=None)


def _list_root(pattern: str) -> str:
    """The folder named by a folder or glob ``pattern``."""
    magic = _glob_start(pattern)
    if storage.is_remote(pattern):
        return pattern[:magic].rsplit("/", 1)[0] if magic is not None else pattern.rstrip("/")
    if magic is None and os.path.isdir(pattern):
        return os.path.abspath(pattern)
    return os.path.abspath(os.path.dirname(pattern[:magic]) or ".")


def _list_files(pattern: str) -> tuple[str, list[str]]:
    root = _list_root(pattern)
    if storage.is_remote(pattern):
        magic = _glob_start(pattern)
        glob_pattern = pattern if magic is not None else f"{root}/**"
        uris = [uri for uri in storage.match(glob_pattern) if magic is not None or uri.lower().endswith(VIDEO_EXTENSIONS)]
        return root, sorted(uris)
    if os.path.isdir(pattern):
        files = [os.path.join(d, f) for d, names in _walk_folders(root) for f in names
                 if f.lower().endswith(VIDEO_EXTENSIONS)]
    else:
        files = [os.path.abspath(f) for f in glob.glob(pattern, recursive=True) if os.path.isfile(f)]
    return root, sorted(files)


def _walk_folders(root: str) -> Iterator[tuple[str, list[str]]]:
    """Each folder under ``root`` with its file names, following links to folders (a dataset put
    together from linked speaker folders) but entering each real folder once, in sorted order, so
    that a link loop ends and a folder linked twice gives its videos once, under the same path
    every run."""
    entered = set()
    for folder, folders, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in entered:
            folders.clear()
            continue
        entered.add(real)
        folders.sort()
        yield folder, names


def _read_listing(path: str) -> list[RawInput]:
    data = arrow_reader(path)
    table = pq.read_table(data) if path.endswith(".parquet") else pacsv.read_csv(data)
    if "uri" not in table.column_names:
        raise ConfigError(f"{path}: a listing needs a 'uri' column "
                          f"(optional: speaker, video, utterance, split, duration)")
    base = path.rsplit("/", 1)[0] if storage.is_remote(path) else os.path.dirname(os.path.abspath(path))
    raws = []
    for row in table.to_pylist():
        uri = str(row["uri"])
        try:
            duration = float(row.get("duration") or 0.0)
            if not 0.0 <= duration < math.inf:
                raise ValueError(duration)
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: the duration of {uri} is {row['duration']!r}; give seconds as a number >= 0, "
                              f"or leave it empty") from None
        if not storage.is_remote(uri):
            uri = f"{base}/{uri}" if storage.is_remote(base) else os.path.normpath(os.path.join(base, uri))
        from_path = ids_from_path(uri, "")
        speaker, video, utterance = (str(row[c]) if row.get(c) not in (None, "") else from_path[i]
                                     for i, c in enumerate(("speaker", "video", "utterance")))
        raws.append(RawInput(uri, (speaker, video, utterance), str(row.get("split") or ""), duration))
    return raws


def identify(raws: list[RawInput], root: str = "") -> tuple[list[InputItem], list[FailureRecord]]:
    """Check each input's ids; inputs whose ids are unusable, whose URI scheme no installed file
    system reads, whose split is unknown, or whose ids repeat an earlier input's, become failure
    records (``bad_id``, ``unsupported_uri``, ``duplicate_id``). Items and records carry URIs
    relative to ``root``."""
    items: list[InputItem] = []
    failures: list[FailureRecord] = []
    seen: dict[str, str] = {}
    for raw in raws:
        uri = relative_to(raw.uri, root)

        def fail(reason: Reason, detail: str, input_id: str = uri, uri: str = uri) -> None:
            failures.append(FailureRecord(uri, input_id, Stage.DISCOVER.value, reason.value, detail))
        if not _is_utf8(uri):
            # a local file name in another encoding: tables and shards hold UTF-8 text only
            shown = uri.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            fail(Reason.BAD_ID, f"{shown}: the file name is not UTF-8; rename the file", shown, shown)
            continue
        if storage.is_remote(raw.uri) and not _readable_scheme(raw.uri):
            fail(Reason.UNSUPPORTED_URI, f"{uri}: no installed file system reads this scheme "
                                         f"({storage.install_hint(uri)})")
            continue
        if raw.split and raw.split not in SPLITS:
            fail(Reason.BAD_ID, f"{uri}: split {raw.split!r} is not one of {', '.join(SPLITS)}")
            continue
        try:
            speaker, video, utterance = (sanitize_id(r) for r in raw.ids)
            item = InputItem(uri, speaker, video, utterance, split=raw.split, root=root if uri != raw.uri else "")
        except ValueError as error:
            fail(Reason.BAD_ID, f"{uri}: {error}")
            continue
        if item.key_prefix in seen:
            fail(Reason.DUPLICATE_ID, f"{uri}: same ids as {seen[item.key_prefix]}; rename one of them",
                 item.input_id)
            continue
        seen[item.key_prefix] = uri
        items.append(item)
    return items, failures


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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


def expected_frames(raws: list[RawInput], root: str = "") -> dict[str, int]:
    """Per input URI (relative to ``root``, as the items carry it), the 25 fps frames it is
    expected to give: from the listing's ``duration``
    column, else from a local file's header (:func:`~voxmesh.pipelines.ingest.probe.header_duration`);
    inputs on object stores without a listed duration are left out (they count as
    ``UNKNOWN_FRAMES`` in the plan)."""
    frames = {}
    for raw in raws:
        seconds = raw.duration or (0.0 if storage.is_remote(raw.uri) else header_duration(raw.uri))
        if seconds > 0:
            frames[relative_to(raw.uri, root)] = max(1, round(seconds * FPS))
    return frames


def parts_to_build(tasks: list[PartTask], committed: list[TarStats]) -> list[PartTask]:
    """The planned parts not yet committed with exactly their planned inputs (a part committed by
    a run with another plan, e.g. another worker count, is built again)."""
    done = {(stats.shard, tuple(stats.inputs)) for stats in committed}
    return [task for task in tasks if (task.name, tuple(item.uri for item in task.items)) not in done]


def expected_input_frames(item: InputItem, frames: dict[str, int]) -> int:
    """The frames ``item`` is expected to give (``frames`` per URI; ``UNKNOWN_FRAMES`` where absent)."""
    return frames.get(item.uri, UNKNOWN_FRAMES)


def deal_parts(tasks: list[PartTask], frames: dict[str, int], workers: int) -> dict[str, int]:
    """A worker slot (0..``workers``-1) per part name, so that the slots' expected frames are
    even: parts are dealt largest first to the slot with the fewest frames so far (longest
    processing time first, within 4/3 of the best possible makespan). Ties go by part name, so
    the deal is a pure function of the plan."""
    size = {task.name: sum(expected_input_frames(item, frames) for item in task.items) for task in tasks}
    load = [0] * max(workers, 1)
    slots = {}
    for task in sorted(tasks, key=lambda t: (-size[t.name], t.name)):
        slot = min(range(len(load)), key=lambda k: (load[k], k))
        slots[task.name] = slot
        load[slot] += size[task.name]
    return slots


def plan_parts(items: list[InputItem], split_of_speaker: dict[str, str], inputs_per_part: int,
               frames_per_part: int = 2000, min_parts: int = 1, frames: dict[str, int] | None = None) -> list[PartTask]:
    """Assign inputs to parts. Per split, inputs are ordered by a hash of their id (so that a
    part, and the shard it lands in, mixes speakers) and cut into groups of consecutive inputs,
    each closed once it holds ``inputs_per_part`` inputs or ``frames_per_part`` expected frames
    (``frames``, per URI; ``UNKNOWN_FRAMES`` where absent). Groups are what packing keeps
    together. Then, while there are fewer parts than ``min_parts`` (the workers, so that none
    idles) or a part holds more than its fair share of the expected frames (all of them over
    ``min_parts``, so that no worker is left with the tail), the part with the most expected
    frames that has two inputs or more is cut in two where its frames are halved. Inside a part,
    key order. Inputs whose speaker has no split are left out (the caller recorded them as
    failures)."""
    if inputs_per_part < 1 or frames_per_part < 1:
        raise ConfigError("--inputs-per-part and --frames-per-part must be at least 1")
    known = frames or {}

    def cost(item: InputItem) -> int:
        return expected_input_frames(item, known)

    by_split: dict[str, list[InputItem]] = {}
    for item in items:
        if item.speaker in split_of_speaker:
            by_split.setdefault(split_of_speaker[item.speaker], []).append(item)
    parts: list[tuple[str, int, list[InputItem]]] = []  # (split, group, inputs in hash order)
    for split in sorted(by_split):
        ordered = sorted(by_split[split], key=lambda i: (stable_unit(f"shard:{i.key_prefix}"), i.key_prefix))
        groups: list[list[InputItem]] = [[]]
        n_frames = 0
        for item in ordered:
            if groups[-1] and (len(groups[-1]) == inputs_per_part or n_frames >= frames_per_part):
                groups.append([])
                n_frames = 0
            groups[-1].append(item)
            n_frames += cost(item)
        parts += [(split, index, group) for index, group in enumerate(groups)]
    fair_share = sum(cost(i) for _, _, inputs in parts for i in inputs) / max(min_parts, 1)
    while True:
        splittable = [k for k, part in enumerate(parts) if len(part[2]) > 1]
        if not splittable:
            break
        k = max(splittable, key=lambda k: (sum(map(cost, parts[k][2])), -k))
        split, group_index, inputs = parts[k]
        prefix = list(itertools.accumulate(map(cost, inputs)))
        if len(parts) >= min_parts and prefix[-1] <= fair_share:
            break
        cut = min(bisect.bisect_left(prefix, prefix[-1] / 2) + 1, len(inputs) - 1)
        parts[k:k + 1] = [(split, group_index, inputs[:cut]), (split, group_index, inputs[cut:])]
    tasks: list[PartTask] = []
    n_tasks: Counter[str] = Counter()
    for split, group_index, inputs in parts:
        tasks.append(PartTask(split, n_tasks[split], tuple(sorted(inputs, key=lambda i: i.key_order)), group_index))
        n_tasks[split] += 1
    log.debug("planned %d parts of %d inputs", len(tasks), sum(len(t.items) for t in tasks))
    return tasks
