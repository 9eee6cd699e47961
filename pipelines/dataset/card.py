"""Outputs for people and for random access: the dataset card (``README.md`` in the output) and a
wids index per split (``_meta/wids-{split}.json``).

The card opens with a YAML header that Hugging Face ``datasets`` reads: one config whose data
files are each split's shard tars, the features of every member (fixed trailing dimensions, so
arrays come back with their shapes and dtypes), the licence and task tags. So
``datasets.load_dataset(OUT)`` gives the samples of each split, and nothing under ``_meta/`` is
taken for data.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter, defaultdict

from voxmesh.schemas import FPS, FailureRecord, SampleMeta, TarStats, iter_tar_samples, storage
from voxmesh.schemas.sample import MEMBER_DOCS, MEMBER_DTYPES, META_DOCS, OPTIONAL_MEMBERS, STATIC_MEMBERS, decode_npy
from voxmesh.schemas.shards import META_DIR, SHARDS_DIR, write_atomic
from voxmesh.schemas.tables import FAILURES_DOCS, MANIFEST_DOCS

DEFAULT_LICENSE = "unknown: check the source's terms"
TAGS = ("speech-driven-3d-facial-animation", "3d-face-mesh", "talking-head", "audio", "webdataset")
# meta.json field annotation -> Hugging Face value type
META_TYPES = {"str": "string", "int": "int64", "float": "float64", "bool": "bool"}  # nullable too: "int | None"


def write_wids_indexes(output: str, stats: list[TarStats]) -> None:
    """``_meta/wids-{split}.json`` for ``wids.ShardListDataset`` (shard URLs relative to the index)."""
    by_split: dict[str, list[dict]] = defaultdict(list)
    for shard in stats:
        if shard.samples:
            by_split[shard.split].append({"url": f"../{SHARDS_DIR}/{shard.shard}.tar", "nsamples": len(shard.samples)})
    for split, shardlist in sorted(by_split.items()):
        index = {"__kind__": "wids-shard-index-v1", "wids_version": 1, "name": f"voxmesh-{split}",
                 "shardlist": shardlist}
        write_atomic(storage.join(output, META_DIR, f"wids-{split}.json"), json.dumps(index, indent=1).encode("utf-8"))


def member_shapes(output: str, stats: list[TarStats]) -> dict[str, tuple[int, ...]]:
    """Shapes of the members of the first sample (all samples share their trailing dimensions)."""
    for shard in stats:
        if shard.samples:
            _, members = next(iter_tar_samples(storage.join(output, SHARDS_DIR, f"{shard.shard}.tar")))
            return {name: decode_npy(data).shape for name, data in sorted(members.items()) if name.endswith(".npy")}
    return {}


def yaml_header(license_text: str, splits: list[str], shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """The card's YAML front matter (strings written as JSON, which YAML reads)."""
    lines = ["---", "pretty_name: voxmesh dataset"]
    slug = license_text.strip().split(":")[0].strip().lower()
    if slug == "unknown" or (slug and " " not in slug and slug == license_text.strip().lower()):
        lines.append(f"license: {json.dumps(slug)}")
    else:
        lines += ["license: other", f"license_name: {json.dumps(license_text.strip()[:100])}"]
    lines += ["task_categories:", "- other", "tags:"] + [f"- {tag}" for tag in TAGS]
    if splits:
        lines += ["configs:", "- config_name: default", "  data_files:"]
    for split in splits:
        lines += [f"  - split: {split}", f"    path: {json.dumps(f'{SHARDS_DIR}/{split}-*.tar')}"]
    lines += ["dataset_info:", "  features:", "  - name: __key__", "    dtype: string",
              "  - name: __url__", "    dtype: string"]
    for name, shape in shapes.items():
        dtype = MEMBER_DTYPES[name].name
        lines.append(f"  - name: {name}")
        if len(shape) == 1:
            lines.append(f"    list: {dtype}")
        else:  # the time axis (first) varies between samples; a static member has none
            dims = ", ".join(str(n) for n in (shape if name in STATIC_MEMBERS else ("null", *shape[1:])))
            lines += ["    dtype:", f"      array{len(shape)}_d:", f"        shape: [{dims}]",
                      f"        dtype: {dtype}"]
    if shapes:
        lines += ["  - name: meta.json", "    struct:"]
        for field in dataclasses.fields(SampleMeta):
            python_type = str(field.type).removesuffix(" | None")
            lines += [f"    - name: {field.name}", f"      dtype: {META_TYPES[python_type]}"]
    return lines + ["---", ""]


def write_dataset_card(output: str, dataset: dict, rows: list[dict], failures: list[FailureRecord],
                       stats: list[TarStats]) -> None:
    """The card: YAML for ``datasets``, then what the dataset is, how to read it, every member's
    shape, dtype, units and frame, every table column, how it was made, its licence, splits and
    failures. ``stats``: the committed shards' (as ``finalize`` read them)."""
    config, counts = dataset["config"], dataset["counts"]
    shapes = member_shapes(output, stats)
    per_split: dict[str, Counter] = defaultdict(Counter)
    speakers: dict[str, set] = defaultdict(set)
    for row in rows:
        per_split[row["split"]].update(clips=1, frames=row["n_frames"])
        speakers[row["split"]].add(row["speaker"])
    license_text = config.get("license") or DEFAULT_LICENSE
    lines = yaml_header(license_text, sorted(per_split), shapes) + [
        "# voxmesh dataset",
        "",
        f"Speech-driven 3D facial animation data: {counts['clips']} clips "
        f"({counts['hours']:.3f} h) of {counts['speakers']} speakers from {counts['inputs']} input videos, "
        f"with per-frame 3D face meshes (head pose removed), head pose, image landmarks and 16 kHz speech "
        f"at {FPS} fps. Schema v{dataset['schema_version']}; reconstruction backend `{config['backend']}`.",
        "",
        "## Licence",
        "",
        f"Source footage: {license_text} (as declared with `voxmesh build --license`). The meshes, landmarks "
        "and audio are derived from it and carry its terms.",
        "",
        *reading_section(),
        *members_section(shapes, dataset["head_frame"]),
        *columns_section(),
        *how_made_section(dataset),
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
    lines += ["", *files_section()]
    write_atomic(storage.join(output, "README.md"), "\n".join(lines).encode("utf-8"))


def reading_section() -> list[str]:
    return [
        "## Reading",
        "",
        "```python",
        "import datasets",
        "ds = datasets.load_dataset(\"path/to/this/folder\")                  # splits from the header above",
        "train = ds[\"train\"].with_format(\"numpy\", dtype=None)              # dtype=None keeps int16 audio",
        "stream = datasets.load_dataset(\"path/to/this/folder\", split=\"train\", streaming=True).with_format(\"numpy\")",
        "```",
        "",
        "(`with_format(\"numpy\")` without `dtype=None` casts integer arrays to int64 in map-style datasets.)",
        "With WebDataset: `webdataset.WebDataset(sorted(glob.glob(\"shards/train-*.tar\")))`; for random access, "
        "`wids.ShardListDataset(\"_meta/wids-train.json\")`. Decode members without unpickling anything, e.g. with "
        "`voxmesh.schemas.decode_members`; `voxmesh.schemas.collate` batches clips of different lengths.",
        "",
    ]


def members_section(shapes: dict[str, tuple[int, ...]], head_frame: str) -> list[str]:
    """The members' table; ``head_frame``: the frame and units of ``mesh.npy`` (the backend's)."""
    lines = ["## Members of a sample", "",
             f"T frames at {FPS} fps. Shapes of this dataset's first sample: "
             + ", ".join(f"`{name}` {shape}" for name, shape in shapes.items()) + ".", "",
             "| member | dtype | shape | units and frame |", "| --- | --- | --- | --- |"]
    for name, (shape, meaning) in MEMBER_DOCS.items():
        if name in shapes or name not in OPTIONAL_MEMBERS:
            lines.append(f"| `{name}` | {MEMBER_DTYPES[name].name} | {shape} | {meaning.format(head_frame=head_frame)} |")
    lines += ["| `meta.json` | UTF-8 JSON | | the fields below |", "", "| meta.json field | meaning |",
              "| --- | --- |"] + [f"| `{name}` | {meaning} |" for name, meaning in META_DOCS.items()]
    return lines + [""]


def columns_section() -> list[str]:
    lines = ["## Tables", "", "`manifest.parquet`: one row per sample.", "", "| column | meaning |", "| --- | --- |"]
    lines += [f"| `{name}` | {meaning} |" for name, meaning in MANIFEST_DOCS.items()]
    lines += ["", "`failures.parquet`: one row per input (or clip) that gave no sample; joins the manifest on "
              "`input_id`.", "", "| column | meaning |", "| --- | --- |"]
    lines += [f"| `{name}` | {meaning} |" for name, meaning in FAILURES_DOCS.items()]
    return lines + ["", "Both files carry the schema version in their Parquet metadata (`voxmesh.schema_version`).", ""]


def how_made_section(dataset: dict) -> list[str]:
    """Every option that shaped the data, from ``dataset.json``'s config."""
    config = dataset["config"]
    lines = ["## How it was made", "",
             "`voxmesh build`, with every `source_uri` relative to the input root that `dataset.json` "
             "records, and these options:", "", "| option | value |", "| --- | --- |"]
    for group, values in sorted(config.items()):
        if isinstance(values, dict):
            lines += [f"| {group}.{name} | {value} |" for name, value in sorted(values.items())]
        elif group != "input":
            lines.append(f"| {group} | {values} |")
    lines += ["", "Versions: " + ", ".join(f"{name} {version}" for name, version in sorted(dataset["versions"].items()))
              + ". The same inputs, options and versions give the same bytes.", ""]
    return lines


def files_section() -> list[str]:
    return [
        "## Files",
        "",
        "- `shards/{split}-NNNNNN.tar`: WebDataset shards (nothing else is in `shards/`).",
        "- `manifest.parquet`, `failures.parquet`: the tables above.",
        "- `dataset.json`: the full config, the input root, versions and counts.",
        "- `_meta/shards/{split}-NNNNNN.stats.json`: each shard's commit record (its manifest rows, failures and "
        "inputs); `_meta/wids-{split}.json`: indexes for `wids.ShardListDataset`. Not data.",
        "",
    ]
