"""Schema v1 of voxmesh datasets: samples, tables, topologies, shards and their validation."""

from .collate import collate
from .keys import is_valid_key, make_key, sanitize_id
from .reader import (
    decode_members,
    iter_samples,
    load_samples,
    open_split,
    raise_naming_the_shard,
    read_manifest,
    shard_paths,
)
from .reasons import Reason, Stage
from .sample import (
                     FPS,
                     MEMBER_DTYPES,
                     REQUIRED_MEMBERS,
                     SAMPLE_RATE,
                     SAMPLES_PER_FRAME,
                     SCHEMA_VERSION,
                     Sample,
                     SampleMeta,
                     decode_npy,
                     decode_npy_file,
                     float_to_pcm,
                     pcm_to_float,
)
from .shards import SampleTarWriter, TarStats, committed_stats, iter_tar_samples, shard_name
from .tables import FAILURES_SCHEMA, MANIFEST_SCHEMA, FailureRecord, manifest_row, write_failures, write_manifest
from .topology import Topology, get_topology, known_topologies, register_topology
from .validate import Problem, validate_dataset

__all__ = [
    "FAILURES_SCHEMA", "FPS", "FailureRecord", "MANIFEST_SCHEMA", "MEMBER_DTYPES", "Problem",
    "REQUIRED_MEMBERS", "Reason", "SAMPLES_PER_FRAME", "SAMPLE_RATE", "SCHEMA_VERSION", "Sample",
    "SampleMeta", "TarStats", "SampleTarWriter", "Stage", "Topology", "collate", "committed_stats", "decode_members",
    "decode_npy", "decode_npy_file", "float_to_pcm", "get_topology", "is_valid_key", "iter_samples",
    "iter_tar_samples", "known_topologies", "load_samples", "make_key", "manifest_row", "open_split",
    "pcm_to_float", "raise_naming_the_shard", "read_manifest", "register_topology", "sanitize_id", "shard_name", "shard_paths",
    "validate_dataset", "write_failures", "write_manifest",
]
