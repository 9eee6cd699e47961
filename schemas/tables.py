"""``manifest.parquet`` (one row per sample) and ``failures.parquet`` (one row per input or clip
that did not make it), as pyarrow schemas and the plain records they are made from."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from . import storage
from .sample import META_DOCS, SCHEMA_VERSION, SampleMeta

# key of the schema version in both Parquet files' metadata
VERSION_METADATA_KEY = b"voxmesh.schema_version"

MANIFEST_SCHEMA = pa.schema([
    ("key", pa.string()),
    ("input_id", pa.string()),
    ("split", pa.string()),
    ("shard", pa.string()),
    ("speaker", pa.string()),
    ("video", pa.string()),
    ("utterance", pa.string()),
    ("track", pa.int32()),
    ("clip", pa.int32()),
    ("source_uri", pa.string()),
    ("start_time", pa.float64()),
    ("end_time", pa.float64()),
    ("n_frames", pa.int32()),
    ("n_samples", pa.int64()),
    ("backend", pa.string()),
    ("topology", pa.string()),
    ("confidence_mean", pa.float32()),
    ("lip_motion", pa.float32()),
    ("jitter", pa.float32()),
    ("av_offset", pa.int32()),
    ("av_offset_confidence", pa.float32()),
    ("av_offset_ok", pa.bool_()),
    ("av_offset_reason", pa.string()),
])

MANIFEST_DOCS = {name: META_DOCS.get(name) or {
    "input_id": "speaker/video/utterance of the input the sample comes from (joins failures.parquet)",
    "shard": "the shard holding the sample, shards/{shard}.tar",
}[name] for name in MANIFEST_SCHEMA.names}

FAILURES_SCHEMA = pa.schema([
    ("source_uri", pa.string()),
    ("input_id", pa.string()),
    ("split", pa.string()),
    ("shard", pa.string()),
    ("stage", pa.string()),
    ("reason", pa.string()),
    ("detail", pa.string()),
])


FAILURES_DOCS = {
    "source_uri": "input video, relative to the input root recorded in dataset.json",
    "input_id": "speaker/video/utterance where the ids are known, else the URI; a clip-level record "
                "appends its track and clip",
    "split": "split of the input's speaker (empty: failed before splits were assigned)",
    "shard": "the shard whose build task recorded it (empty: failed before planning)",
    "stage": "pipeline stage that failed (schemas/reasons.py)",
    "reason": "reason code (schemas/reasons.py)",
    "detail": "one line: the input and what went wrong",
}


@dataclasses.dataclass(frozen=True)
class FailureRecord:
    """An input (or, with an ``input_id`` suffix, a part of one) that produced no sample.

    ``input_id`` is ``speaker/video/utterance`` where the ids are known, else the URI; ``shard``
    is the shard whose task recorded it (empty for failures found before planning).
    """

    source_uri: str
    input_id: str
    stage: str
    reason: str
    detail: str
    split: str = ""
    shard: str = ""


def manifest_row(meta: SampleMeta, shard: str) -> dict:
    row = {name: getattr(meta, name) for name in MANIFEST_SCHEMA.names if name not in ("shard", "input_id")}
    row["shard"] = shard
    row["input_id"] = f"{meta.speaker}/{meta.video}/{meta.utterance}"
    return row


def versioned(schema: pa.Schema) -> pa.Schema:
    """``schema`` with the schema version in its metadata (both Parquet files carry it)."""
    return schema.with_metadata({VERSION_METADATA_KEY: str(SCHEMA_VERSION).encode()})


def write_manifest(rows: Iterable[dict], path: str) -> None:
    table = pa.Table.from_pylist(sorted(rows, key=lambda r: r["key"]), schema=versioned(MANIFEST_SCHEMA))
    write_parquet(table, path)


def write_failures(records: Iterable[FailureRecord], path: str) -> None:
    rows = sorted((dataclasses.asdict(r) for r in records),
                  key=lambda r: (r["source_uri"], r["input_id"], r["stage"], r["reason"]))
    write_parquet(pa.Table.from_pylist(rows, schema=versioned(FAILURES_SCHEMA)), path)


def write_parquet(table: pa.Table, uri: str) -> None:
    """Write ``table`` as Parquet to a path or file-system URI, whole (see ``storage``)."""
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    storage.write_bytes(uri, buffer.getvalue().to_pybytes())


def read_parquet(uri: str, columns: list[str] | None = None) -> pa.Table:
    """A Parquet table from a path or file-system URI (only ``columns`` when given)."""
    return pq.read_table(arrow_reader(uri), columns=columns)


def arrow_reader(uri: str) -> pa.BufferReader:
    """The bytes of a path or file-system URI, for pyarrow's readers, in memory that pyarrow owns.

    Not over the Python ``bytes``: a Parquet read can hand the last reference to its input to one
    of pyarrow's pool threads, which then releases it after ``read_table`` has returned. Releasing
    a Python object takes the GIL, and a thread that asks for it while the interpreter exits is
    ended mid-destructor, which aborts the process ("terminate called without an active
    exception"): 1 to 4 ``voxmesh demo`` runs in 6 ended so on this machine."""
    data = storage.read_bytes(uri)
    owned = pa.allocate_buffer(len(data))
    with pa.FixedSizeBufferWriter(owned) as writer:
        writer.write(data)
    return pa.BufferReader(owned)
