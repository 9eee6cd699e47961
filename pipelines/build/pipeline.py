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

import contextlib
import dataclasses
import gc
import hashlib
import json
import logging
import os
import socket
import tarfile
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from importlib.metadata import version

import apache_beam as beam
import cv2
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from voxmesh.pipelines.build.inputs import (
    PartTask,
    SplitFractions,
    assign_splits,
    deal_parts,
    discover,
    expected_frames,
    identify,
    input_root,
    nothing_found,
    parts_to_build,
    plan_parts,
)
from voxmesh.pipelines.build.packing import PARTS_DIR, PackShard, ShardLimits, remaining_packs, remove_parts
from voxmesh.pipelines.build.progress import ProgressReporter
from voxmesh.pipelines.build.shared_model import check_share_mode, make_backend
from voxmesh.pipelines.dataset.card import DEFAULT_LICENSE, write_dataset_card, write_wids_indexes
from voxmesh.pipelines.dataset.report import summarize
from voxmesh.pipelines.ingest.clips import ClipRules
from voxmesh.pipelines.ingest.faces import FaceDetector, TrackRules
from voxmesh.pipelines.ingest.process import failure, process_input
from voxmesh.pipelines.logs import hold_quiet_native_logs, release_quiet_native_logs
from voxmesh.recon import ReconstructionBackend, backend_class
from voxmesh.recon.base import CANONICAL_HEAD_FRAME, BackendContractError
from voxmesh.schemas import (
    SCHEMA_VERSION,
    FailureRecord,
    Reason,
    Sample,
    SampleMeta,
    SampleTarWriter,
    Stage,
    TarStats,
    committed_stats,
    iter_tar_samples,
    storage,
    write_failures,
    write_manifest,
)
from voxmesh.schemas.errors import ConfigError, DatasetStateError, MissingFileError, UserError, raised_user_error
from voxmesh.schemas.settings import differences
from voxmesh.schemas.shards import BUILD_RECORD, META_DIR, SHARDS_DIR, write_atomic, write_tar_sample

log = logging.getLogger(__name__)

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
    frames_per_part: int = 2000
    min_parts: int = 1  # the workers: parts are split until each has one (shards do not depend on it)
    shard_limits: ShardLimits = ShardLimits()
    chunk_size: int = 64
    resume: bool = False
    # ("BACKEND.KEY", "VALUE") pairs of --backend-option, e.g. ("flame.model", "s3://bucket/flame.npz")
    backend_options: tuple[tuple[str, str], ...] = ()
    share_model: str = "auto"  # one model per machine: auto (a backend with independent frames on a GPU), always, never

    def options_of(self, backend: str) -> dict[str, str]:
        """The ``--backend-option`` values of ``backend`` by key."""
        prefix = f"{backend}."
        return {name[len(prefix):]: value for name, value in self.backend_options if name.startswith(prefix)}

    license: str = DEFAULT_LICENSE  # of the source footage, as the user declares it

    def __post_init__(self):
        names = self.backends
        if "" in names or len(set(names)) != len(names):
            raise ConfigError(f"--backend {self.backend}: expected one backend or a comma-separated list of "
                              f"different backends, e.g. mediapipe,flame")

    @property
    def backends(self) -> tuple[str, ...]:
        """The backends of ``backend``, a comma-separated list (one dataset each)."""
        return tuple(name.strip() for name in self.backend.split(","))

    def dataset_outputs(self) -> dict[str, str]:
        """Backend name -> its dataset folder: ``output`` for one backend, ``output/<name>`` each
        for several (paired datasets: same keys, clips, audio and splits)."""
        names = self.backends
        if len(names) == 1:
            return {names[0]: self.output}
        return {name: storage.join(self.output, name) for name in names}


class SampleSpool:
    """The encoded samples of one input, in a temporary tar on disk until the input is done, so
    that memory does not grow with a video's length and an input that fails part-way leaves
    nothing in the shard."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()
        self._tar: tarfile.TarFile | None = tarfile.open(fileobj=self._file, mode="w|")
        self._metas: list[SampleMeta] = []

    def add(self, sample: Sample) -> None:
        if self._tar is None:
            raise RuntimeError("SampleSpool.add after replay")
        write_tar_sample(self._tar, sample.key, sample.to_members())
        self._metas.append(sample.meta)

    def replay(self) -> Iterator[tuple[SampleMeta, dict[str, bytes]]]:
        self._close_tar()
        self._file.seek(0)
        for meta, (key, members) in zip(self._metas, iter_tar_samples(self._file)):
            assert key == meta.key, (key, meta.key)
            yield meta, members

    def __enter__(self) -> SampleSpool:
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
        self.backends: list[ReconstructionBackend] = []
        self.detector: FaceDetector | None = None
        self.quiet = False

    def setup(self):
        cv2.setNumThreads(1)  # a worker per core: OpenCV's own thread pool only adds contention
        storage.configure(self.storage_args)
        self.quiet = hold_quiet_native_logs()  # MediaPipe's C++ warnings, on workers the launcher did not quiet
        self.detector = FaceDetector()
        self.backends = [make_backend(name, self.config.options_of(name), self.config.share_model)
                         for name in self.config.backends]
        for backend in self.backends:
            backend.setup()
            try:  # its topology may come from its set-up (FLAME's from the model): known by now
                backend.topology.check()
            except (KeyError, ValueError) as error:
                raise BackendContractError(f"backend {backend.name}: {error.args[0]}") from None
        # What is loaded by now (Beam, the libraries, the models) lives as long as the worker:
        # keep the garbage collector off it. Its collections then skip it, and so does the
        # worker's exit, which took 0.63 s and takes 0.13 (the local runner stops its workers one
        # after the other).
        gc.freeze()

    def process(self, task: PartTask):
        """The part in every backend's dataset: the same inputs, failures and clips in each."""
        if not self.backends or self.detector is None:
            raise RuntimeError("BuildPart.process called before setup")
        counters: Counter[str] = Counter()
        outputs = self.config.dataset_outputs()
        with contextlib.ExitStack() as stack:
            writers = {name: stack.enter_context(SampleTarWriter(output, task.split, task.index,
                                                                 [i.uri for i in task.items], folder=PARTS_DIR))
                       for name, output in outputs.items()}
            for item in task.items:
                with contextlib.ExitStack() as spools_open:
                    spools = {name: spools_open.enter_context(SampleSpool()) for name in outputs}
                    try:
                        result = process_input(item, task.split, self.backends, self.detector, self.config.clip_rules,
                                               self.config.track_rules, self.config.chunk_size,
                                               sink=self._router(spools))
                        failures, n_frames = result.failures, result.n_frames
                    except BackendContractError:
                        raise  # wrong for every input: the build stops with its one line
                    except Exception as error:  # noqa: BLE001 - one input must never cost the shard
                        last_line = traceback.format_exception_only(type(error), error)[-1].strip()
                        last_line = last_line.replace(item.location, item.uri)  # no build machine path
                        failures, n_frames = [failure(item, Stage.RECONSTRUCT, Reason.INTERNAL_ERROR,
                                                      f"{item.uri}: {last_line}")], 0
                    n_samples = 0
                    if not failures:
                        for name, spool in spools.items():
                            n_samples = 0
                            for meta, members in spool.replay():
                                writers[name].write_members(meta, members)
                                n_samples += 1
                for record in failures:
                    for writer in writers.values():
                        writer.record_failure(record)
                    beam.metrics.Metrics.counter("voxmesh.failures", f"{record.stage}.{record.reason}").inc()
                counters.update(inputs=1, clips=n_samples, frames=n_frames)
            for writer in writers.values():
                writer.commit()
        for name, value in counters.items():
            beam.metrics.Metrics.counter("voxmesh", name).inc(value)
        yield task.name

    def _router(self, spools: dict[str, SampleSpool]) -> Callable[[Sample], None]:
        """Where each sample goes: the one spool, or the spool of the backend that made it."""
        if len(spools) == 1:
            return next(iter(spools.values())).add
        spool_of = {backend.name: spools[name] for name, backend in zip(spools, self.backends)}
        return lambda sample: spool_of[sample.meta.backend].add(sample)

    def teardown(self):
        for backend in self.backends:
            backend.close()
        if self.detector is not None:
            self.detector.close()
        release_quiet_native_logs(self.quiet)
        gc.freeze()  # what the parts loaded or cached since set-up: kept out of the exit's collection


class SpreadParts(beam.PTransform):
    """Parts onto workers. Beam's local runner hands each worker a fixed share of the elements
    up front and never moves work between workers, so there the parts go in the slots of
    :func:`~voxmesh.pipelines.build.inputs.deal_parts` (one slot per worker, even in expected
    frames). Other runners balance the elements themselves (Dataflow splits work dynamically) and
    get a plain ``Reshuffle``. ``slot_of``: part name -> slot, or None for the plain reshuffle."""

    def __init__(self, slot_of: dict[str, int] | None):
        super().__init__()
        self.slot_of = slot_of

    def expand(self, parts):
        if self.slot_of is None:
            return parts | "Reshuffle" >> beam.Reshuffle()
        return (parts
                | "ToSlot" >> beam.Map(lambda task, slot_of: (slot_of[task.name], task), self.slot_of)
                | "GroupBySlot" >> beam.GroupByKey()
                | "PartsOfSlot" >> beam.FlatMapTuple(lambda _, tasks: sorted(tasks, key=lambda t: t.name)))


LOCAL_RUNNERS = (None, "FnApiRunner", "DirectRunner", "SwitchingDirectRunner")


def local_workers(options: PipelineOptions) -> int | None:
    """The worker processes of Beam's local runner (``--direct_num_workers``, 0 meaning all
    cores), or None on any other runner."""
    runner = options.view_as(StandardOptions).runner
    if (runner if isinstance(runner, str) or runner is None else type(runner).__name__) not in LOCAL_RUNNERS:
        return None
    return options.view_as(DirectOptions).direct_num_workers or os.cpu_count() or 1


def local_pipeline_args(workers: int | None = None) -> list[str]:
    """Beam's in-process runner over all cores; never the default runner, which downloads a binary."""
    return ["--runner=FnApiRunner", "--direct_running_mode=multi_processing",
            f"--direct_num_workers={workers or os.cpu_count() or 1}"]


def build_pipeline_args(beam_args: list[str], workers: int | None = None) -> list[str]:
    """The Beam arguments of a build from the command line's ``beam_args`` (what ``voxmesh build``
    does not know itself): Beam's local runner over ``workers`` cores unless they name a
    ``--runner``, then ``beam_args``. ConfigError for an argument that is no Beam option either:
    Beam would drop it with a warning, so a typo (``--wokers``) or a shell-expanded glob would
    otherwise build something else than asked, and without the local runner's arguments on Beam's
    default runner, which downloads a binary."""
    unknown = unknown_to_beam(beam_args)
    if unknown:
        raise ConfigError(_unknown_argument(unknown[0]))
    if any(arg == "--runner" or arg.startswith("--runner=") for arg in beam_args):
        return list(beam_args)
    return local_pipeline_args(workers) + list(beam_args)


def unknown_to_beam(args: list[str]) -> list[str]:
    """The arguments that none of Beam's pipeline options parses."""
    from apache_beam.options.pipeline_options import _BeamArgumentParser  # the parser Beam's options use
    parser = _BeamArgumentParser(allow_abbrev=False)
    classes: dict[str, type] = {}
    for options_class in PipelineOptions.__subclasses__():  # a class defined twice counts once, as in Beam
        classes.setdefault(str(options_class), options_class)
    for options_class in classes.values():
        options_class._add_argparse_args(parser)
    return parser.parse_known_args(args)[1]


def _unknown_argument(argument: str) -> str:
    if argument.split("=", 1)[0] in ("-v", "--verbose", "-q", "--quiet", "--log-file"):
        return f"{argument}: -v, -q and --log-file go before the verb (voxmesh -q build ...)"
    if not argument.startswith("-"):
        quote = " (quote a glob given to --input, or the shell expands it into several files)" \
            if os.path.exists(argument) else ""
        return f"unexpected argument {argument}{quote}"
    return (f"unrecognised option {argument}: neither `voxmesh build --help` nor Beam's pipeline options "
            f"know it")


def run_build(config: BuildConfig, pipeline_args: list[str] | None = None, progress: bool = False) -> dict:
    """Run the whole build and return the summary (also written to ``dataset.json``; with several
    backends, one dataset each under ``output/<backend>``, whose counts are the same)."""
    pipeline_args = pipeline_args or local_pipeline_args()
    storage.configure(pipeline_args)
    # fail before any work when a backend cannot run here; their versions and head frames go into dataset.json
    versions, head_frames = {}, {}
    for name in config.backends:
        cls = backend_class(name, config.options_of(name))
        check_share_mode(config.share_model, cls)
        versions[name], head_frames[name] = cls(options=config.options_of(name)).version, cls.head_frame
    storage.check_reachable(config.input, "--input")
    storage.check_reachable(config.output, "--output")
    check_job_endpoint(pipeline_args)
    outputs = config.dataset_outputs()
    raws = discover(config.input)
    if not raws:
        raise ConfigError(nothing_found(config.input))
    root = input_root(config.input, [raw.uri for raw in raws])
    items, early_failures = identify(raws, root)
    split_of_speaker, split_failures = assign_splits(items, config.splits)
    frames = expected_frames(raws, root)
    tasks = plan_parts(items, split_of_speaker, config.inputs_per_part, config.frames_per_part, config.min_parts, frames)
    planned = {item.uri for task in tasks for item in task.items}
    _prepare_output(config)
    if any(not planned <= inputs_in_shards(output) for output in outputs.values()):
        todo = sorted({task for output in outputs.values()
                       for task in parts_to_build(tasks, committed_stats(output, PARTS_DIR))},
                      key=lambda task: (task.split, task.index))
        if len(todo) < len(tasks):
            log.info("resuming: %d of the %d parts are committed and kept; building the other %d",
                     len(tasks) - len(todo), len(tasks), len(todo))
        options = PipelineOptions(pipeline_args)
        workers = local_workers(options)
        slot_of = deal_parts(todo, frames, workers) if workers else None
        first_output = next(iter(outputs.values()))
        with user_errors_from_workers(), ProgressReporter(first_output, todo, enabled=progress), \
                beam.Pipeline(options=options) as pipeline:
            committed = (pipeline
                         # SpreadParts redistributes the parts on every runner: Create's own
                         # reshuffle would only add a stage (0.2 s of a local run)
                         | "PlanParts" >> beam.Create(todo, reshuffle=False)
                         | "SpreadParts" >> SpreadParts(slot_of)
                         | "BuildPart" >> beam.ParDo(BuildPart(config, pipeline_args))
                         | "AllPartsCommitted" >> beam.combiners.Count.Globally())
            for name, output in outputs.items():
                suffix = "" if len(outputs) == 1 else f"_{name}"
                (committed
                 | f"PlanShards{suffix}" >> beam.FlatMap(remaining_packs, output, [t.name for t in tasks],
                                                         config.shard_limits, {t.name: t.group for t in tasks},
                                                         pipeline_args)
                 | f"SpreadShards{suffix}" >> beam.Reshuffle()
                 | f"PackShard{suffix}" >> beam.ParDo(PackShard(output, pipeline_args)))
    summaries = {name: finalize(dataclasses.replace(config, output=output, backend=name), planned,
                                early_failures + split_failures, n_discovered=len(raws), root=root,
                                backend_version=versions[name], paired=config.backends,
                                head_frame=head_frames[name])
                 for name, output in outputs.items()}
    for output in outputs.values():
        remove_parts(output)
    return summaries[config.backends[0]]  # paired datasets have the same counts


def check_job_endpoint(pipeline_args: list[str], timeout: float = 10.0) -> None:
    """ConfigError, before anything is written, when ``--job_endpoint`` (a portable runner's job
    server: Flink's, Spark's) does not accept a connection: Beam would wait for it without end."""
    from apache_beam.options.pipeline_options import PortableOptions
    endpoint = PipelineOptions(pipeline_args).view_as(PortableOptions).job_endpoint
    if not endpoint or endpoint == "embed":
        return
    host, _, port = endpoint.rpartition(":")
    try:
        socket.create_connection((host or "localhost", int(port)), timeout=timeout).close()
    except (OSError, ValueError) as error:
        raise ConfigError(f"--job_endpoint {endpoint}: no job server answers there ({error}); start the runner's job "
                          f"server (e.g. apache/beam_flink1.18_job_server) or fix the host:port") from None


def inputs_in_shards(output: str) -> set[str]:
    return {uri for stats in committed_stats(output) for uri in stats.inputs}


def _prepare_output(config: BuildConfig) -> None:
    """Refuse to mix runs in one folder: without ``resume`` it must be empty; with it, it must be
    empty or hold a build with the same options (:data:`~voxmesh.schemas.shards.BUILD_RECORD`), and then what interrupted
    writes left is dropped (their parts and shards are rebuilt). Nothing is deleted from a folder
    that no build with these options wrote."""
    outputs = config.dataset_outputs().values()
    if not storage.is_remote(config.output) and os.path.isfile(config.output):
        raise ConfigError(f"--output {config.output} is a file; give a folder (new, or empty)")
    if not storage.is_empty_folder(config.output):
        if not config.resume:
            raise DatasetStateError(f"{config.output} is not empty; pass --resume to continue a build there, "
                                    f"or choose a new output folder")
        for output in outputs:
            _check_same_build(config, output)
    record = json.dumps(_build_record(config), indent=1, sort_keys=True).encode("utf-8")
    for output in outputs:
        storage.make_folder(output)
        write_atomic(storage.join(output, META_DIR, BUILD_RECORD), record)
        remove_uncommitted_files(output)


def _build_record(config: BuildConfig) -> dict:
    """What a resumed build must share with the one it continues: the options that shape the data
    (as ``dataset.json`` records them) and the whole input (as a hash: no bucket path is kept)."""
    record = _jsonable(config)
    record.pop("share_model")  # where the model lives, not what it computes
    record.pop("license")  # the card's, not the data's
    source = config.input if storage.is_remote(config.input) else os.path.abspath(config.input)
    record["input"] = hashlib.sha256(source.rstrip("/").encode("utf-8")).hexdigest()  # videos/ = ./videos
    return record


def _check_same_build(config: BuildConfig, output: str) -> None:
    path = storage.join(output, META_DIR, BUILD_RECORD)
    try:
        recorded = json.loads(storage.read_bytes(path))
    except MissingFileError:
        raise DatasetStateError(f"{output} holds no voxmesh build to resume (no {META_DIR}/{BUILD_RECORD}); "
                                f"choose a new output folder") from None
    except ValueError:
        raise DatasetStateError(f"{path} is damaged, so the build there cannot be resumed; build into a new "
                                f"folder") from None
    now = json.loads(json.dumps(_build_record(config)))  # as read back: lists, not tuples
    changed = ["another --input" if line.startswith("input ") else line for line in differences(recorded, now)]
    if changed:
        raise DatasetStateError(f"{output} was built with other options ({'; '.join(changed[:3])}); resume with "
                                f"the same options, or build into a new folder")


def remove_uncommitted_files(output: str) -> None:
    """Delete temporary files, and tars without their stats JSON (the commit marker, under
    ``_meta/``), of the output, its shards and its parts."""
    for folder in ("", SHARDS_DIR, PARTS_DIR):
        tars = storage.join(output, folder) if folder else output
        names = storage.list_names(tars)
        stats = set(storage.list_names(storage.join(output, META_DIR, folder))) if folder else set()
        storage.delete([storage.join(tars, n) for n in names
                        if ".tmp-" in n or (n.endswith(".tar") and f"{n[:-len('.tar')]}.stats.json" not in stats)])


def finalize(config: BuildConfig, planned: set[str], early_failures: list[FailureRecord],
             n_discovered: int, root: str = "", backend_version: str = "", paired: tuple[str, ...] = (),
             head_frame: str = CANONICAL_HEAD_FRAME) -> dict:
    """Write the manifest, the failures table and ``dataset.json`` from the committed shards,
    check that they hold exactly the ``planned`` input URIs, and return the summary.
    ``backend_version`` is recorded (for FLAME it names the landmark embedding), and ``head_frame``
    (the frame and units of ``mesh.npy``, the backend's); ``paired`` names
    the backends of a run that built one dataset per backend (recorded when more than one)."""
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
        "input_root": root,  # what every source_uri is relative to (preview finds the videos by it)
        "config": _jsonable(config),
        "versions": {name: version(name) for name in OUTPUT_SHAPING_PACKAGES},
        "counts": summary,
        "backend_version": backend_version,
        "head_frame": head_frame,
    }
    if len(paired) > 1:
        dataset["paired_backends"] = list(paired)
    write_atomic(storage.join(config.output, "dataset.json"),
                 json.dumps(dataset, indent=1, sort_keys=True).encode("utf-8"))
    write_dataset_card(config.output, dataset, rows, failures, stats)
    return summary


@contextlib.contextmanager
def user_errors_from_workers() -> Iterator[None]:
    """A worker's error for the user (a backend whose weights file is damaged, found when the
    worker sets the backend up) as the one line it is: Beam's runners pass a worker's exception on
    as the text of their own, which would end the command with a traceback."""
    try:
        yield
    except UserError:
        raise
    except Exception as error:
        message = raised_user_error((str(error).strip().splitlines() or [""])[-1])  # what the worker ended with
        if message is not None:
            raise ConfigError(f"{message} (raised in a worker; fix it, then run the same command with --resume)") \
                from error
        raise


def _jsonable(config: BuildConfig) -> dict:
    """The options that shape the data; no path of the build machine but the input root's."""
    raw = dataclasses.asdict(config)
    raw.pop("resume")
    raw.pop("output")
    raw.pop("min_parts")  # shapes the parts, not the dataset
    return raw
