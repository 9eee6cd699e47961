"""``voxmesh validate PARENT`` for paired datasets: one build with several backends writes one
dataset per backend under ``PARENT/<backend>/``; each must be valid on its own, and together they
must pair clip for clip: the same keys in the same splits, the same source, start, end, frame and
sample counts, the same audio bytes, and the same failures."""

from __future__ import annotations

import hashlib
from collections import Counter

from . import storage
from .shards import SHARDS_DIR, iter_tar_samples
from .tables import read_parquet
from .validate import Problem, validate_dataset

PAIRED_FIELDS = ("split", "speaker", "source_uri", "start_time", "end_time", "n_frames", "n_samples")


def is_dataset(folder: str) -> bool:
    """Whether ``folder`` (a path or URI) holds one dataset: ``dataset.json`` is written last."""
    return storage.exists(storage.join(folder, "dataset.json"))


def paired_folders(parent: str) -> list[str]:
    """The dataset folders directly under ``parent`` (a path or URI), sorted."""
    pattern = storage.join(parent, "*", "dataset.json")
    return sorted(uri[:-len("/dataset.json")] for uri in storage.match(pattern))


def audio_digests(folder: str) -> dict[str, str]:
    """Key -> SHA-256 of the sample's audio member, over every shard of ``folder``."""
    digests = {}
    shard_dir = storage.join(folder, SHARDS_DIR)
    for name in sorted(n for n in storage.list_names(shard_dir) if n.endswith(".tar")):
        for key, members in iter_tar_samples(storage.join(shard_dir, name)):
            digests[key] = hashlib.sha256(members.get("audio.npy", b"")).hexdigest()
    return digests


def _pairing_facts(folder: str) -> tuple[dict[str, tuple], set[tuple], dict[str, str]]:
    manifest = read_parquet(storage.join(folder, "manifest.parquet")).to_pylist()
    clips = {row["key"]: tuple(row[f] for f in PAIRED_FIELDS) for row in manifest}
    failures = {(r["source_uri"], r["stage"], r["reason"])
                for r in read_parquet(storage.join(folder, "failures.parquet")).to_pylist()}
    return clips, failures, audio_digests(folder)


def validate_paired(parent: str) -> tuple[list[Problem], Counter]:
    """Check every dataset under ``parent`` and that they pair; problems name the dataset."""
    folders = paired_folders(parent)
    if len(folders) < 2:
        return [Problem("", "", f"{parent}: neither a dataset (no {SHARDS_DIR}/) nor a folder of paired datasets")], \
            Counter()
    problems: list[Problem] = []
    counts: Counter = Counter()
    for folder in folders:
        found, checked = validate_dataset(folder)
        name = storage.basename(folder)
        problems += [Problem(p.shard, p.key, f"[{name}] {p.message}") for p in found]
        counts.update(checked)
    if problems:
        return problems, counts
    reference_name = storage.basename(folders[0])
    clips, failures, audio = _pairing_facts(folders[0])
    for folder in folders[1:]:
        name = storage.basename(folder)
        other_clips, other_failures, other_audio = _pairing_facts(folder)
        for key in sorted(set(clips) ^ set(other_clips)):
            where = reference_name if key in clips else name
            problems.append(Problem("", key, f"only in {where}: the datasets do not pair"))
        for key in sorted(set(clips) & set(other_clips)):
            for field, mine, theirs in zip(PAIRED_FIELDS, clips[key], other_clips[key]):
                if mine != theirs:
                    problems.append(Problem("", key, f"{field} is {mine!r} in {reference_name}, {theirs!r} in {name}"))
            if audio.get(key) != other_audio.get(key):
                problems.append(Problem("", key, f"audio differs between {reference_name} and {name}"))
        for record in sorted(failures ^ other_failures):
            where = reference_name if record in failures else name
            problems.append(Problem("", "", f"failure {record} only in {where}"))
    counts["paired_datasets"] = len(folders)
    return problems, counts
