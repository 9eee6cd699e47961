"""``voxmesh build``: the Apache Beam pipeline from input videos to committed shards, then the
manifest, the failures table and ``dataset.json``.

Shape of the pipeline: the launcher discovers and plans parts (a pure function of the inputs and
the config); Beam runs one ``BuildPart`` per planned part on any worker (decode, reconstruct,
cut, write the part's tar, commit its stats); once every part is committed, one step plans the
shards (``packing``: bounded by samples and bytes) and ``PackShard`` writes them on any worker;
the launcher assembles the tables from the committed shard stats and removes the parts. A part's
inputs stream through one worker, so no frames or meshes cross a shuffle and memory is bounded by
one chunk of frames and one face track's results.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import traceback
from collections import Counter
from typing import Iterator
from importlib.metadata import version

import apache_beam as beam
import webdataset as wds
from apache_beam.options.pipeline_options import PipelineOptions

from voxmesh.recon import ReconstructionBackend, backend_class
from voxmesh.schemas import (SCHEMA_VERSION, FailureRecord, Reason, Sample, SampleMeta, TarStats, SampleTarWriter,
                             Stage, committed_stats, iter_tar_samples, write_failures, write_manifest)
from voxmesh.schemas import storage
from voxmesh.schemas.shards import SHARDS_DIR, write_atomic

from voxmesh.pipelines.ingest.clips import ClipRules
from voxmesh.pipelines.ingest.faces import FaceDetector, TrackRules
from voxmesh.pipelines.dataset.card import write_dataset_card, write_wids_indexes
from voxmesh.pipelines.build.inputs import PartTask, SplitFractions, assign_splits, discover, identify, plan_parts
from voxmesh.pipelines.build.packing import PARTS_DIR, PackShard, ShardLimits, remaining_packs, remove_parts
from voxmesh.pipelines.build.progress import ProgressReporter
from voxmesh.pipelines.build.shared_model import check_share_mode, make_backend
from voxmesh.pipelines.dataset.report import summarize
from voxmesh.pipelines.ingest.process import failure, process_input
from voxmesh.schemas.errors import DatasetStateError

# Distributions whose versions can change the bytes of the output; recorded in dataset.json.
OUTPUT_SHAPING_PACKAGES = ("voxmesh", "mediapipe", "opencv-contrib-python", "numpy", "scipy", "av", "soxr",
                           "apache-beam", "webdataset", "pyarrow")


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    input: str
    output: str
    backend: str = "mediapipe"
    clip_rules: ClipRules = ClipRules()
    track_rules: TrackRules = TrackRules()
    splits: SplitFractions = SplitFractions()
    inputs_per_part: int = 8
    shard_limits: ShardLimits = ShardLimits()
    chunk_size: int = 64
    resume: bool = False
    # ("BACKEND.KEY", "VALUE") pairs of --backend-option, e.g. ("flame.model", "s3://bucket/flame.npz")
    backend_options: tuple[tuple[str, str], ...] = ()
    share_model: str = "auto"  # one model per machine: auto (shareable backend on a GPU), always, never

    def options_of(self, backend: str) -> dict[str, str]:
        """The ``--backend-option`` values of ``backend`` by key."""
        prefix = f"{backend}."
        return {name[len(prefix):]: value for name, value in self.backend_options if name.startswith(prefix)}


class SampleSpool:
    """The encoded samples of one input, in a temporary tar on disk until the input is done, so
    that memory does not grow with a video's length and an input that fails part-way leaves
    nothing in the shard."""

    def __init__(self):
        self._file = tempfile.TemporaryFile()
        self._tar = wds.TarWriter(self._file, encoder=False, mtime=0)
        self._metas: list[SampleMeta] = []

    def add(self, sample: Sample) -> None:
        self._tar.write({"__key__": sample.key, **sample.to_members()})
        self._metas.append(sample.meta)

    def replay(self) -> Iterator[tuple[SampleMeta, dict[str, bytes]]]:
        self._close_tar()
        self._file.seek(0)
        for meta, (key, members) in zip(self._metas, iter_tar_samples(self._file)):
            assert key == meta.key, (key, meta.key)
            yield meta, members

    def __enter__(self) -> "SampleSpool":
        return self

    def __exit__(self, *exc) -> None:
        self._close_tar()
        self._file.close()

    def _close_tar(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None


class BuildPart(beam.DoFn):
    """Writes one planned part: every input of the task becomes samples or failure records; an
    exception inside one input becomes an ``internal_error`` record for that input only.
    ``storage_args`` are the pipeline arguments for the file systems (``--s3_endpoint_url``, ...)."""

    def __init__(self, config: BuildConfig, storage_args: list[str] | None = None):
        self.config = config
        self.storage_args = storage_args
        self.backend: ReconstructionBackend | None = None
        self.detector: FaceDetector | None = None

    def setup(self):
        storage.configure(self.storage_args)
        self.detector = FaceDetector()
        self.backend = make_backend(self.config.backend, self.config.options_of(self.config.backend),
                                    self.config.share_model)
        self.backend.setup()

    def process(self, task: PartTask):
        if self.backend is None or self.detector is None:
            raise RuntimeError("BuildPart.process called before setup")
        backend, detector = self.backend, self.detector
        counters: Counter[str] = Counter()
        with SampleTarWriter(self.config.output, task.split, task.index, [i.uri for i in task.items],
                         folder=PARTS_DIR) as writer:
            for item in task.items:
                with SampleSpool() as spool:
                    try:
                        result = process_input(item, task.split, backend, detector, self.config.clip_rules,
                                               self.config.track_rules, self.config.chunk_size, sink=spool.add)
                        failures, n_frames = result.failures, result.n_frames
                    except Exception as error:  # noqa: BLE001 - one input must never cost the shard
                        last_line = traceback.format_exception_only(type(error), error)[-1].strip()
                        failures, n_frames = [failure(item, Stage.RECONSTRUCT, Reason.INTERNAL_ERROR,
                                                      f"{item.uri}: {last_line}")], 0
                    n_samples = 0
                    if not failures:
                        for meta, members in spool.replay():
                            writer.write_members(meta, members)
                            n_samples += 1
                for record in failures:
                    writer.record_failure(record)
                    beam.metrics.Metrics.counter("voxmesh.failures", f"{record.stage}.{record.reason}").inc()
                counters.update(inputs=1, clips=n_samples, frames=n_frames)
            writer.commit()
        for name, value in counters.items():
            beam.metrics.Metrics.counter("voxmesh", name).inc(value)
        yield task.name

    def teardown(self):
        if self.backend is not None:
            self.backend.close()
        if self.detector is not None:
            self.detector.close()


def local_pipeline_args(workers: int | None = None) -> list[str]:
    """Beam's in-process runner over all cores; never the default runner, which downloads a binary."""
    return ["--runner=FnApiRunner", "--direct_running_mode=multi_processing",
            f"--direct_num_workers={workers or os.cpu_count() or 1}"]


def run_build(config: BuildConfig, pipeline_args: list[str] | None = None, progress: bool = False) -> dict:
    """Run the whole build and return the summary (also written to ``dataset.json``)."""
    pipeline_args = pipeline_args or local_pipeline_args()
    storage.configure(pipeline_args)
    # fail before any work when the backend cannot run
    check_share_mode(config.share_model, backend_class(config.backend, config.options_of(config.backend)))
    storage.check_reachable(config.input, "--input")
    storage.check_reachable(config.output, "--output")
    raws = discover(config.input)
    items, early_failures = identify(raws)
    split_of_speaker, split_failures = assign_splits(items, config.splits)
    tasks = plan_parts(items, split_of_speaker, config.inputs_per_part)
    planned = {item.uri for task in tasks for item in task.items}
    _prepare_output(config)
    if not planned <= inputs_in_shards(config.output):
        done = {s.shard for s in committed_stats(config.output, PARTS_DIR)}
        todo = [t for t in tasks if t.name not in done]
        options = PipelineOptions(pipeline_args)
        with ProgressReporter(config.output, todo, enabled=progress):
            with beam.Pipeline(options=options) as pipeline:
                (pipeline
                 | "PlanParts" >> beam.Create(todo)
                 | "SpreadParts" >> beam.Reshuffle()
                 | "BuildPart" >> beam.ParDo(BuildPart(config, pipeline_args))
                 | "AllPartsCommitted" >> beam.combiners.Count.Globally()
                 | "PlanShards" >> beam.FlatMap(remaining_packs, config.output, [t.name for t in tasks],
                                                config.shard_limits, pipeline_args)
                 | "SpreadShards" >> beam.Reshuffle()
                 | "PackShard" >> beam.ParDo(PackShard(config.output, pipeline_args)))
    summary = finalize(config, planned, early_failures + split_failures, n_discovered=len(raws))
    remove_parts(config.output)
    return summary


def inputs_in_shards(output: str) -> set[str]:
    return {uri for stats in committed_stats(output) for uri in stats.inputs}


def _prepare_output(config: BuildConfig) -> None:
    """Refuse to mix runs in one folder unless resuming; on resume, drop what interrupted writes
    left (their parts and shards are rebuilt)."""
    if not config.resume and not storage.is_empty_folder(config.output):
        raise DatasetStateError(f"{config.output} is not empty; pass --resume to continue a build there, "
                              f"or choose a new output folder")
    storage.make_folder(config.output)
    remove_uncommitted_files(config.output)


def remove_uncommitted_files(output: str) -> None:
    """Delete temporary files and tars without their stats JSON (the commit marker)."""
    for folder in (output, storage.join(output, SHARDS_DIR), storage.join(output, PARTS_DIR)):
        names = storage.list_names(folder)
        committed = {n[:-len(".stats.json")] for n in names if n.endswith(".stats.json")}
        storage.delete([storage.join(folder, n) for n in names
                        if ".tmp-" in n or (n.endswith(".tar") and n[:-len(".tar")] not in committed)])


def finalize(config: BuildConfig, planned: set[str], early_failures: list[FailureRecord],
             n_discovered: int) -> dict:
    """Write the manifest, the failures table and ``dataset.json`` from the committed shards,
    check that they hold exactly the ``planned`` input URIs, and return the summary."""
    stats: list[TarStats] = committed_stats(config.output)
    in_shards = [uri for s in stats for uri in s.inputs]
    if set(in_shards) != planned or len(in_shards) != len(planned):
        missing, foreign = sorted(planned - set(in_shards)), sorted(set(in_shards) - planned)
        raise DatasetStateError(f"the shards in {config.output} do not hold exactly the planned inputs "
                           f"(missing {missing[:3]}, not planned {foreign[:3]}); rerun with --resume, "
                           f"or build into a new folder if the inputs or the config changed")
    rows = [row for s in stats for row in s.samples]
    failures = early_failures + [FailureRecord(**f) for s in stats for f in s.failures]
    write_manifest(rows, storage.join(config.output, "manifest.parquet"))
    write_failures(failures, storage.join(config.output, "failures.parquet"))
    write_wids_indexes(config.output, stats)

    inputs_with_clips = {r["source_uri"] for r in rows}
    failed_inputs = {f.source_uri for f in failures}
    summary = {
        "inputs": n_discovered,
        "inputs_with_clips": len(inputs_with_clips),
        "inputs_failed": len(failed_inputs),
        "shards": len(stats),
        **summarize(rows, [dataclasses.asdict(f) for f in failures]),
    }
    if len(inputs_with_clips) + len(failed_inputs) != n_discovered or inputs_with_clips & failed_inputs:
        raise RuntimeError(f"inputs not accounted for: {summary}")
    dataset = {
        "schema_version": SCHEMA_VERSION,
        "config": _jsonable(config),
        "versions": {name: version(name) for name in OUTPUT_SHAPING_PACKAGES},
        "counts": summary,
    }
    write_atomic(storage.join(config.output, "dataset.json"),
                 json.dumps(dataset, indent=1, sort_keys=True).encode("utf-8"))
    write_dataset_card(config.output, dataset, rows, failures)
    return summary


def _jsonable(config: BuildConfig) -> dict:
    raw = dataclasses.asdict(config)
    raw.pop("resume")
    return raw
