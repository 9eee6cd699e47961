"""``voxmesh validate OUT_DIR``: check a dataset against schema v1 and its own manifest.

Every problem becomes one :class:`Problem` naming the shard, the key and what is wrong; the
validator never stops at the first one.
"""

from __future__ import annotations

import dataclasses
import json
import tarfile
from collections import Counter, defaultdict

import numpy as np

from . import storage
from .errors import MissingFileError
from .keys import is_valid_key
from .sample import MEMBER_DTYPES, REQUIRED_MEMBERS, SAMPLES_PER_FRAME, SCHEMA_VERSION, decode_npy
from .shards import BUILD_RECORD, META_DIR, SHARDS_DIR, TarStats, iter_tar_samples, stats_path
from .tables import FAILURES_SCHEMA, MANIFEST_SCHEMA, VERSION_METADATA_KEY, read_parquet
from .topology import get_topology


@dataclasses.dataclass(frozen=True)
class Problem:
    shard: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.shard or '-'}: {self.key or '-'}: {self.message}"


def validate_dataset(out_dir: str) -> tuple[list[Problem], Counter]:
    """Check every shard and the manifest; return the problems and counts of what was checked.
    MissingFileError for a folder that no build wrote (nothing to check)."""
    problems: list[Problem] = []
    counts: Counter = Counter()
    shard_dir = storage.join(out_dir, SHARDS_DIR)
    listing = storage.list_names(shard_dir)
    if not listing and not storage.exists(storage.join(out_dir, "dataset.json")):
        if storage.exists(storage.join(out_dir, META_DIR, BUILD_RECORD)):
            return [Problem("", "", f"the build writing {out_dir} has not finished (no dataset.json); run the same "
                                    f"`voxmesh build` with --resume")], counts
        raise MissingFileError(f"{out_dir}: no {SHARDS_DIR}/ folder, dataset.json or build record: not a dataset; "
                               f"pass the folder that `voxmesh build` wrote (its --output)")

    keys_seen: dict[str, str] = {}
    names = sorted(n[:-4] for n in listing if n.endswith(".tar"))
    for name in sorted(n for n in listing if not n.endswith(".tar")):
        problems.append(Problem(name, "", "a temporary file of an interrupted write; rerun the build with --resume"
                                if ".tmp-" in name else f"not a shard ({SHARDS_DIR}/ holds the dataset's tars only)"))
    stats_names = sorted(n[:-11] for n in storage.list_names(storage.join(out_dir, META_DIR, SHARDS_DIR))
                         if n.endswith(".stats.json"))
    for name in sorted(set(stats_names) - set(names)):
        problems.append(Problem(name, "", "stats JSON without its tar"))
    for name in names:
        if name not in stats_names:
            problems.append(Problem(name, "", "tar without stats JSON (an interrupted write); "
                                              "rerun the build with --resume"))
            continue
        counts["shards"] += 1
        problems += _check_shard(storage.join(shard_dir, name), stats_path(out_dir, SHARDS_DIR, name), name,
                                 keys_seen, counts)

    problems += _check_tables(out_dir, keys_seen)
    return problems, counts


def _check_shard(stem: str, stats_file: str, name: str, keys_seen: dict[str, str],
                 counts: Counter) -> list[Problem]:
    problems = []
    try:
        stats = TarStats.read(stats_file)
        listed = {row["key"] for row in stats.samples}
    except (OSError, ValueError, TypeError, KeyError) as error:
        problems.append(Problem(name, "", f"unreadable stats JSON: {error}"))
        listed = None
    in_tar = set()
    try:
        for key, members in iter_tar_samples(f"{stem}.tar"):
            counts["samples"] += 1
            if key in in_tar or key in keys_seen:
                problems.append(Problem(name, key, f"duplicate key (also in {keys_seen.get(key, name)})"))
            in_tar.add(key)
            keys_seen.setdefault(key, name)
            problems += [Problem(name, key, m) for m in check_sample(key, members)]
    except (tarfile.TarError, OSError, EOFError) as error:
        problems.append(Problem(name, "", f"truncated or unreadable tar: {error}"))
    if listed is not None:
        for key in sorted(listed - in_tar):
            problems.append(Problem(name, key, "listed in the shard's stats but not in its tar"))
        for key in sorted(in_tar - listed):
            problems.append(Problem(name, key, "in the tar but not in the shard's stats"))
    return problems


def check_sample(key: str, members: dict[str, bytes]) -> list[str]:
    """Problems of one sample's members (empty when it conforms to schema v1)."""
    problems = []
    if not is_valid_key(key):
        problems.append("key is not {speaker}_{video}_{utterance}_{track:03d}_{clip:03d} without dots")
    missing = [m for m in REQUIRED_MEMBERS if m not in members]
    if missing:
        problems.append(f"missing member(s) {', '.join(missing)}")
    unknown = sorted(set(members) - set(REQUIRED_MEMBERS) - set(MEMBER_DTYPES))
    if unknown:
        problems.append(f"unknown member(s) {', '.join(unknown)}")
    try:
        meta = json.loads(members["meta.json"]) if "meta.json" in members else None
    except ValueError as error:
        return problems + [f"meta.json is not JSON: {error}"]
    arrays = {}
    for member in MEMBER_DTYPES:
        if member in members:
            try:
                arrays[member] = decode_npy(members[member])
            except ValueError as error:
                problems.append(f"{member} is not a readable .npy: {error}")
    for member, array in arrays.items():
        if array.dtype != MEMBER_DTYPES[member]:
            problems.append(f"{member} has dtype {array.dtype}, schema v1 wants {MEMBER_DTYPES[member]}")
        elif array.dtype.kind == "f" and not np.isfinite(array).all():
            problems.append(f"{member} has {int((~np.isfinite(array)).sum())} non-finite values")
    if meta is None:
        return problems
    problems += _check_against_meta(key, meta, arrays)
    return problems


def _check_against_meta(key: str, meta: dict, arrays: dict[str, np.ndarray]) -> list[str]:
    problems = []
    if meta.get("schema_version") != SCHEMA_VERSION:
        problems.append(f"meta.json schema_version is {meta.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    if meta.get("key") != key:
        problems.append(f"meta.json key is {meta.get('key')!r}")
    n_frames, n_samples = meta.get("n_frames"), meta.get("n_samples")
    if not isinstance(n_frames, int) or not isinstance(n_samples, int):
        return problems + ["meta.json lacks integer n_frames / n_samples"]
    n_vertices: int | None
    n_landmarks: int | None
    try:
        topology = get_topology(meta.get("topology", ""))
        n_vertices, n_landmarks = topology.n_vertices, topology.n_landmarks
    except KeyError as error:
        problems.append(f"meta.json: {error.args[0]}")
        n_vertices = n_landmarks = None
    expected = {"mesh.npy": (n_frames, n_vertices, 3), "pose.npy": (n_frames, 4, 4),
                "lmk2d.npy": (n_frames, n_landmarks, 2), "audio.npy": (n_samples,)}
    for member, shape in expected.items():
        array = arrays.get(member)
        if array is not None and not _shape_matches(array.shape, shape):
            problems.append(f"{member} has shape {array.shape}, meta.json and topology say {shape}")
    coeffs = arrays.get("coeffs.npy")
    if coeffs is not None and (coeffs.ndim != 2 or coeffs.shape[0] != n_frames):
        problems.append(f"coeffs.npy has shape {coeffs.shape}, expected ({n_frames}, C)")
    neutral = arrays.get("neutral.npy")
    if neutral is not None and not _shape_matches(neutral.shape, (n_vertices, 3)):
        problems.append(f"neutral.npy has shape {neutral.shape}, the topology says {(n_vertices, 3)}")
    if abs(n_samples - n_frames * SAMPLES_PER_FRAME) > SAMPLES_PER_FRAME:
        problems.append(f"audio has {n_samples} samples for {n_frames} frames "
                        f"(expected {n_frames * SAMPLES_PER_FRAME} within {SAMPLES_PER_FRAME})")
    return problems


def _shape_matches(actual: tuple, expected: tuple) -> bool:
    return len(actual) == len(expected) and all(e is None or a == e for a, e in zip(actual, expected))


def _check_tables(out_dir: str, keys_in_shards: dict[str, str]) -> list[Problem]:
    problems = []
    try:
        manifest = read_parquet(storage.join(out_dir, "manifest.parquet"))
    except (OSError, ValueError) as error:
        return [Problem("", "", f"cannot read manifest.parquet: {error}")]
    if not manifest.schema.equals(MANIFEST_SCHEMA):
        problems.append(Problem("", "", "manifest.parquet does not have the schema v1 columns and types"))
        return problems
    problems += _version_problems("manifest.parquet", manifest.schema)
    rows = manifest.select(["key", "shard", "split", "speaker"]).to_pylist()
    seen = set()
    splits_of_speaker = defaultdict(set)
    for row in rows:
        key, shard = row["key"], row["shard"]
        if key in seen:
            problems.append(Problem(shard, key, "key appears twice in manifest.parquet"))
        seen.add(key)
        splits_of_speaker[row["speaker"]].add(row["split"])
        if key not in keys_in_shards:
            problems.append(Problem(shard, key, "in manifest.parquet but in no shard"))
        elif keys_in_shards[key] != shard:
            problems.append(Problem(shard, key, f"manifest.parquet says shard {shard}, found in {keys_in_shards[key]}"))
    for key in sorted(set(keys_in_shards) - seen):
        problems.append(Problem(keys_in_shards[key], key, "in a shard but not in manifest.parquet"))
    for speaker, splits in sorted(splits_of_speaker.items()):
        if len(splits) > 1:
            problems.append(Problem("", "", f"speaker {speaker} is in several splits: {', '.join(sorted(splits))}"))
    try:
        failures = read_parquet(storage.join(out_dir, "failures.parquet"))
        if not failures.schema.equals(FAILURES_SCHEMA):
            problems.append(Problem("", "", "failures.parquet does not have the schema v1 columns and types"))
        problems += _version_problems("failures.parquet", failures.schema)
    except (OSError, ValueError) as error:
        problems.append(Problem("", "", f"cannot read failures.parquet: {error}"))
    return problems


def _version_problems(name: str, schema) -> list[Problem]:
    found = (schema.metadata or {}).get(VERSION_METADATA_KEY)
    if found != str(SCHEMA_VERSION).encode():
        return [Problem("", "", f"{name} metadata gives schema version {found!r}, expected {SCHEMA_VERSION}")]
    return []
