"""Schema v1 of voxmesh datasets: samples, tables, topologies, shards and their validation."""

from .keys import is_valid_key, make_key, sanitize_id
from .reasons import Reason, Stage
from .reader import decode_members, iter_samples, open_split, shard_paths
from .sample import (FPS, MEMBER_DTYPES, REQUIRED_MEMBERS, SAMPLE_RATE, SAMPLES_PER_FRAME,
                     SCHEMA_VERSION, Sample, SampleMeta, decode_npy, decode_npy_file)
from .shards import ShardStats, ShardWriter, committed_stats, iter_tar_samples, shard_name
from .tables import (FAILURES_SCHEMA, MANIFEST_SCHEMA, FailureRecord, manifest_row,
                     write_failures, write_manifest)
from .topology import Topology, get_topology, known_topologies, register_topology
from .validate import Problem, validate_dataset

__all__ = [
    "FAILURES_SCHEMA", "FPS", "MANIFEST_SCHEMA", "MEMBER_DTYPES", "REQUIRED_MEMBERS", "SAMPLES_PER_FRAME",
    "SAMPLE_RATE", "SCHEMA_VERSION", "FailureRecord", "Problem", "Reason", "Sample", "SampleMeta",
    "ShardStats", "ShardWriter", "Stage", "Topology", "committed_stats", "decode_members", "decode_npy", "decode_npy_file",
    "get_topology", "is_valid_key",
    "iter_samples", "iter_tar_samples", "known_topologies", "make_key", "manifest_row", "open_split",
    "register_topology", "sanitize_id", "shard_name", "shard_paths", "validate_dataset",
    "write_failures", "write_manifest",
]
