"""Finding inputs, naming them, assigning speaker-disjoint splits, and planning shards.

Ids come from the path: ``.../{speaker}/{video}/{utterance}.mp4`` (VoxCeleb2's layout) gives all
three; ``{speaker}/{utterance}.mp4`` uses the file stem as video id; a lone file is its own speaker.
The plan is a pure function of the set of inputs and the config, so a rerun (or a resumed run)
over the same inputs assigns every input to the same shard.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import os

from voxmesh.schemas import FailureRecord, Reason, Stage, sanitize_id, shard_name

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v")


@dataclasses.dataclass(frozen=True)
class InputItem:
    uri: str
    speaker: str
    video: str
    utterance: str

    @property
    def key_prefix(self) -> str:
        return f"{self.speaker}_{self.video}_{self.utterance}"

    @property
    def input_id(self) -> str:
        return f"{self.speaker}/{self.video}/{self.utterance}"


@dataclasses.dataclass(frozen=True)
class ShardTask:
    """One shard to write: its split, index and the inputs assigned to it, in key order."""

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
            raise ValueError(f"split fractions must be >= 0 and sum to 1, got {self}")


def discover(pattern: str) -> tuple[str, list[str]]:
    """``(root, files)``: every video file under a folder (recursively), or every file matching a
    glob; ``root`` is the folder ids are taken relative to. Sorted, absolute paths."""
    if os.path.isdir(pattern):
        root = os.path.abspath(pattern)
        files = [os.path.join(d, f) for d, _, names in os.walk(root) for f in names
                 if f.lower().endswith(VIDEO_EXTENSIONS)]
    else:
        magic = min((pattern.index(c) for c in "*?[" if c in pattern), default=len(pattern))
        root = os.path.abspath(os.path.dirname(pattern[:magic]) or ".")
        files = [os.path.abspath(f) for f in glob.glob(pattern, recursive=True) if os.path.isfile(f)]
    return root, sorted(files)


def identify(paths: list[str], root: str) -> tuple[list[InputItem], list[FailureRecord]]:
    """Name each input from its path; inputs whose ids are unusable or repeat an earlier input's
    become failure records (``bad_id``, ``duplicate_id``)."""
    items, failures, seen = [], [], {}
    for path in sorted(paths):
        parts = os.path.relpath(path, root).split(os.sep)
        stem = os.path.splitext(parts[-1])[0]
        if len(parts) >= 3:
            raw = (parts[-3], parts[-2], stem)
        elif len(parts) == 2:
            raw = (parts[0], stem, "0")
        else:
            raw = (stem, stem, "0")
        try:
            item = InputItem(path, *(sanitize_id(r) for r in raw))
        except ValueError as error:
            failures.append(FailureRecord(path, path, Stage.DISCOVER.value, Reason.BAD_ID.value, str(error)))
            continue
        if item.key_prefix in seen:
            failures.append(FailureRecord(path, item.input_id, Stage.DISCOVER.value, Reason.DUPLICATE_ID.value,
                                          f"same ids as {seen[item.key_prefix]}; rename one of them"))
            continue
        seen[item.key_prefix] = path
        items.append(item)
    return items, failures


def stable_unit(text: str) -> float:
    """A number in [0, 1) that depends only on ``text`` (SHA-1), the same on every machine."""
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "big") / 2.0 ** 64


def split_of(speaker: str, fractions: SplitFractions) -> str:
    """Speaker-disjoint split from a stable hash of the speaker id."""
    u = stable_unit(f"split:{speaker}")
    if u < fractions.train:
        return "train"
    return "val" if u < fractions.train + fractions.val else "test"


def plan_shards(items: list[InputItem], fractions: SplitFractions, inputs_per_shard: int) -> list[ShardTask]:
    """Assign inputs to shards: per split, order inputs by a hash of their id (so that a shard
    mixes speakers), cut into groups of ``inputs_per_shard``; inside a shard, key order."""
    if inputs_per_shard < 1:
        raise ValueError("inputs_per_shard must be at least 1")
    by_split: dict[str, list[InputItem]] = {}
    for item in items:
        by_split.setdefault(split_of(item.speaker, fractions), []).append(item)
    tasks = []
    for split in sorted(by_split):
        ordered = sorted(by_split[split], key=lambda i: (stable_unit(f"shard:{i.key_prefix}"), i.key_prefix))
        for index, start in enumerate(range(0, len(ordered), inputs_per_shard)):
            group = sorted(ordered[start:start + inputs_per_shard], key=lambda i: i.key_prefix)
            tasks.append(ShardTask(split, index, tuple(group)))
    return tasks
