"""Outputs for people and for random access: the dataset card (``README.md`` in the output) and a
wids index per split (``wids-{split}.json``)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

from voxmesh.schemas import FPS, FailureRecord, TarStats, storage
from voxmesh.schemas.shards import SHARDS_DIR, write_atomic


def write_wids_indexes(output: str, stats: list[TarStats]) -> None:
    """``wids-{split}.json`` for ``wids.ShardListDataset`` (shard URLs relative to the index)."""
    by_split: dict[str, list[dict]] = defaultdict(list)
    for shard in stats:
        if shard.samples:
            by_split[shard.split].append({"url": f"{SHARDS_DIR}/{shard.shard}.tar", "nsamples": len(shard.samples)})
    for split, shardlist in sorted(by_split.items()):
        index = {"__kind__": "wids-shard-index-v1", "wids_version": 1, "name": f"voxmesh-{split}",
                 "shardlist": shardlist}
        write_atomic(storage.join(output, f"wids-{split}.json"), json.dumps(index, indent=1).encode("utf-8"))


def write_dataset_card(output: str, dataset: dict, rows: list[dict], failures: list[FailureRecord]) -> None:
    """A Markdown card: what the dataset is, how it was made, splits, counts and failures."""
    config, counts, versions = dataset["config"], dataset["counts"], dataset["versions"]
    per_split: dict[str, Counter] = defaultdict(Counter)
    speakers: dict[str, set] = defaultdict(set)
    for row in rows:
        per_split[row["split"]].update(clips=1, frames=row["n_frames"])
        speakers[row["split"]].add(row["speaker"])
    lines = [
        "# voxmesh dataset",
        "",
        f"Speech-driven 3D facial animation data: {counts['clips']} clips "
        f"({counts['hours']:.3f} h) of {counts['speakers']} speakers from {counts['inputs']} input videos, "
        f"with per-frame 3D face meshes (head pose removed), head pose, image landmarks and 16 kHz speech "
        f"at 25 fps. Schema v{dataset['schema_version']}; reconstruction backend `{config['backend']}`.",
        "",
        "## How it was made",
        "",
        f"`voxmesh build --input {config['input']} --backend {config['backend']} "
        f"--min-clip-seconds {config['clip_rules']['min_seconds']} --max-clip-seconds {config['clip_rules']['max_seconds']} "
        f"--min-confidence {config['clip_rules']['min_confidence']} --inputs-per-part {config['inputs_per_part']} "
        f"--shard-max-samples {config['shard_limits']['max_samples']} "
        f"--shard-max-mb {config['shard_limits']['max_bytes'] / 2 ** 20:g}`",
        "",
        "Versions: " + ", ".join(f"{name} {version}" for name, version in sorted(versions.items())) + ".",
        "",
        "## Splits (speaker-disjoint)",
        "",
        "| split | clips | hours | speakers |",
        "| --- | --- | --- | --- |",
    ]
    for split in sorted(per_split):
        lines.append(f"| {split} | {per_split[split]['clips']} | {per_split[split]['frames'] / FPS / 3600:.3f} "
                     f"| {len(speakers[split])} |")
    lines += ["", "## Inputs that gave no clip", ""]
    reasons = Counter(f.reason for f in failures)
    if reasons:
        lines += ["| reason | inputs |", "| --- | --- |"] + [f"| {r} | {n} |" for r, n in sorted(reasons.items())]
        lines += ["", "Every one is listed in `failures.parquet` with its URI, stage and detail."]
    else:
        lines.append("None.")
    lines += [
        "",
        "## Files",
        "",
        "- `shards/{split}-NNNNNN.tar`: WebDataset shards; members per sample: `mesh.npy` (T,V,3 float32), "
        "`pose.npy` (T,4,4 float32), `audio.npy` (T*640 int16, 16 kHz), `lmk2d.npy` (T,L,2 float32), `meta.json`.",
        "- `manifest.parquet`: one row per sample; `failures.parquet`: one row per input without a sample.",
        "- `wids-{split}.json`: indexes for random access with `wids.ShardListDataset`.",
        "- `dataset.json`: the full config, versions and counts.",
        "",
        "The source videos carry their own terms of use; so do the meshes and audio derived from them.",
        "",
    ]
    write_atomic(storage.join(output, "README.md"), "\n".join(lines).encode("utf-8"))
