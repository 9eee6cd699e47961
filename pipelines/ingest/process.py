"""One input video in, its samples and failures out.

probe -> audio (16 kHz, aligned) -> one pass over the 25 fps frames: shot cuts on every frame,
face detection on every ``detect_every``-th of a shot, tracks of the dominant face built online
(a lookahead of about 20 frames), crops of each tracked frame -> backend (in batches: within a
run for a backend with tracking state, across runs for a backend whose frames are independent)
-> per-frame results spooled to disk per run of a track -> tracks (runs cut into equal parts) ->
clips -> samples. Memory holds the lookahead's frames, one batch of crops per backend (the same
crops) and one track's results, whatever the video's length; the results of runs waiting for a
batch to fill are on disk.

Several backends share one decode, one tracking and one cut: each crop goes to every backend, a
frame unusable for any backend is unusable for all, and a clip dropped for one backend is dropped
for all, so every clip gives one sample per backend with the same key, frames and audio.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import tempfile
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from voxmesh.metrics.quality import jitter, lip_motion
from voxmesh.metrics.sync import estimate_offset
from voxmesh.pipelines.ingest.audio import load_audio
from voxmesh.pipelines.ingest.clips import ClipRules, frame_problems, reason_for_no_clip, segment
from voxmesh.pipelines.ingest.faces import FaceDetector, TrackRules, crop, split_run, track_frames
from voxmesh.pipelines.ingest.frames import iter_decoded
from voxmesh.pipelines.ingest.item import InputItem
from voxmesh.pipelines.ingest.probe import MediaError, local_path, probe
from voxmesh.pipelines.ingest.tracking import TrackedFrame
from voxmesh.recon import Reconstruction, ReconstructionBackend
from voxmesh.recon.base import check_output
from voxmesh.schemas import FPS, SAMPLES_PER_FRAME, FailureRecord, Reason, Sample, SampleMeta, Stage, make_key


@dataclasses.dataclass
class InputResult:
    """What one input gave: its samples (when no sink took them), failures, frames decoded."""

    samples: list[Sample]
    failures: list[FailureRecord]
    n_frames: int = 0
    n_samples: int = 0


def failure(item: InputItem, stage: Stage, reason: Reason, detail: str) -> FailureRecord:
    return FailureRecord(item.uri, item.input_id, stage.value, reason.value, detail)


def process_input(item: InputItem, split: str, backend: ReconstructionBackend | Sequence[ReconstructionBackend],
                  detector: FaceDetector, clip_rules: ClipRules, track_rules: TrackRules = TrackRules(),
                  chunk_size: int = 64, sink: Callable[[Sample], None] | None = None) -> InputResult:
    """Everything one input yields, for one backend or several (``sample.meta.backend`` tells
    them apart). Samples go to ``sink`` as each track is done (so that memory does not grow with
    the video's length), or into ``result.samples`` without a sink. When the result has failures,
    the input gave no usable sample and anything already sent to the sink must be discarded.
    Media problems become failures; other exceptions propagate (the caller records them as
    ``internal_error``)."""
    backends = [backend] if isinstance(backend, ReconstructionBackend) else list(backend)
    collected: list[Sample] = []
    emit = sink or collected.append
    problems: list[Reason | None] = []  # per frame, why it is not usable (None: it is)
    n_tracks = kept = 0
    dropped_offsets: list[str] = []
    try:
        with local_path(item.location) as path:
            info = probe(path)
            if info.audio_sample_rate == 0:
                return InputResult([], [failure(item, Stage.PROBE, Reason.NO_AUDIO_STREAM,
                                                f"{item.uri}: no audio stream; voxmesh needs the speech")])
            if 0 < info.duration < clip_rules.min_seconds:
                return InputResult([], [failure(item, Stage.PROBE, Reason.TOO_SHORT,
                                                f"{item.uri}: {info.duration:.2f} s < min clip {clip_rules.min_seconds} s")])
            audio = load_audio(path, info.video_start)
            pcm, audio_offset = audio.pcm, audio.offset
            frames = track_frames(iter_decoded(path), detector, track_rules)
            for part in iter_tracks(frames, backends, track_rules, chunk_size, problems):
                span = slice(part.start, part.end)
                has_audio = np.arange(part.start + 1, part.end + 1) * SAMPLES_PER_FRAME <= len(pcm)
                problems[span] = _first_problems([
                    frame_problems(np.where(part.second_face, np.maximum(r.n_faces, 2), r.n_faces), r.valid,
                                   r.confidence, has_audio, clip_rules) for r in part.recons])
                usable = np.array([p is None for p in problems[span]])
                clips = segment(usable, int(round(clip_rules.min_seconds * FPS)), int(round(clip_rules.max_seconds * FPS)))
                for clip_index, (start, end) in enumerate(clips):
                    samples = [_sample(item, split, b, part, r, pcm, audio_offset, clip_index, start, end, clip_rules)
                               for b, r in zip(backends, part.recons)]
                    flagged = [s.meta for s in samples if not s.meta.av_offset_ok]
                    if clip_rules.drop_av_offset and flagged:
                        dropped_offsets.append(f"{flagged[0].av_offset:+d} (confidence {flagged[0].av_offset_confidence:.1f})")
                        continue
                    for sample in samples:
                        emit(sample)
                    kept += 1
                n_tracks += 1
    except MediaError as error:
        detail = error.detail.replace(item.location, item.uri)  # no path of the build machine in the data
        detail = detail if detail.startswith(item.uri) else f"{item.uri}: {detail}"
        return InputResult([], [failure(item, error.stage, error.reason, detail)])
    n_frames = len(problems)
    if n_frames == 0:
        return InputResult([], [failure(item, Stage.DECODE, Reason.DECODE_ERROR, f"{item.uri}: no video frames")])
    if not kept and dropped_offsets:
        listed = ", ".join(dropped_offsets)
        return InputResult([], [failure(item, Stage.SEGMENT, Reason.AV_OFFSET,
                                        f"{item.uri}: every clip's audio-visual offset is confidently beyond "
                                        f"{clip_rules.max_av_offset} frames ({listed}); check the file's sync or raise "
                                        f"--max-av-offset")],
                           n_frames)
    if not kept:
        reason = reason_for_no_clip(problems)
        usable_frames = sum(p is None for p in problems)
        return InputResult([], [failure(item, Stage.SEGMENT, reason,
                                        f"{item.uri}: no clip of {clip_rules.min_seconds} s or more "
                                        f"({usable_frames} of {n_frames} frames usable, {n_tracks} face tracks)")],
                           n_frames)
    return InputResult(collected, [], n_frames, kept)


@dataclasses.dataclass
class TrackPart:
    """One track: frames ``start..end-1`` (a run of the dominant face, or an equal part of a long
    run), their reconstruction in source pixels by each backend and their ``second_face`` flags."""

    index: int
    start: int
    end: int
    recons: list[Reconstruction]
    second_face: np.ndarray


def _first_problems(per_backend: list[list[Reason | None]]) -> list[Reason | None]:
    """Per frame, the first backend's problem (None where every backend can use the frame)."""
    return [next((p for p in frame if p is not None), None) for frame in zip(*per_backend)]


def iter_tracks(frames: Iterator[TrackedFrame], backends: Sequence[ReconstructionBackend], track_rules: TrackRules,
                chunk_size: int, problems: list[Reason | None]) -> Iterator[TrackPart]:
    """Crop every tracked frame as it is decided, reconstruct the crops with every backend in
    batches of at most ``chunk_size`` (:class:`Batcher`: within a run for a backend with tracking
    state, which is reset at each new run; across runs for a backend whose frames are independent),
    and once every backend has a run's results, yield its tracks: the run cut into equal parts of
    at most ``max_track_frames``, each after every backend's ``finish_track``, in the order of the
    video. Appends every frame's status to ``problems`` (None for a tracked frame, until its track
    sets it)."""
    batchers = [Batcher(backend, chunk_size) for backend in backends]
    runs: collections.deque[PendingRun] = collections.deque()  # oldest first, not yet yielded
    numbers = itertools.count()  # track indices
    try:
        for frame in frames:
            problems.append(frame.status)
            if frame.box is None or frame.image is None:
                continue  # in no track
            if not runs or runs[-1].end is not None:
                for backend in backends:
                    backend.reset()
                runs.append(PendingRun(frame.t, [ResultSpool() for _ in backends]))
            run = runs[-1]
            image, transform = crop(frame.image, frame.box, track_rules)
            run.flags.append(frame.second_face)
            run.end = frame.t + 1 if frame.ends_run else None
            for batcher, spool in zip(batchers, run.spools):
                batcher.add(image, transform, spool, frame.ends_run)
            yield from _completed(runs, backends, track_rules, numbers)
        for batcher in batchers:
            batcher.flush()
        yield from _completed(runs, backends, track_rules, numbers)
    finally:
        for run in runs:  # a run the video cut short (no last frame), or an error
            run.close()


def _completed(runs: collections.deque[PendingRun], backends: Sequence[ReconstructionBackend],
               track_rules: TrackRules, numbers: Iterator[int]) -> Iterator[TrackPart]:
    """The tracks of the oldest runs that are complete, removed from ``runs``."""
    while runs and runs[0].complete:
        yield from runs.popleft().tracks(backends, track_rules, numbers)


class Batcher:
    """One backend's crops waiting to be reconstructed, each with its crop-to-source transform and
    its run's spool. A batch is reconstructed when it holds ``chunk_size`` crops, and also at the
    end of each run for a backend with tracking state (so that it sees one run per batch, as it
    must); a backend whose frames are independent (``frames_independent``) gets full batches
    across runs instead, and each run's spool receives its own frames' results. Per frame, the
    results are those of per-run batches up to the float rounding of a batched product (a matrix
    product's sums may be ordered differently for another batch size); for a given input and
    ``chunk_size`` the batches, hence the bytes, are always the same."""

    def __init__(self, backend: ReconstructionBackend, chunk_size: int):
        self.backend, self.chunk_size = backend, chunk_size
        self.crops: list[np.ndarray] = []
        self.transforms: list[tuple[float, float, float]] = []
        self.spools: list[ResultSpool] = []  # per crop, its run's

    def add(self, image: np.ndarray, transform: tuple[float, float, float], spool: ResultSpool, ends_run: bool) -> None:
        self.crops.append(image)
        self.transforms.append(transform)
        self.spools.append(spool)
        if len(self.crops) == self.chunk_size or (ends_run and not self.backend.frames_independent):
            self.flush()

    def flush(self) -> None:
        """Reconstruct the crops held, if any, and add each run's results to its spool."""
        if not self.crops:
            return
        recon = self.backend.reconstruct(np.stack(self.crops))
        check_output(self.backend, recon, len(self.crops))
        recon = recon.to_source(np.array(self.transforms))
        first = 0
        for spool, group in itertools.groupby(self.spools):
            count = len(list(group))
            spool.add(_frames(recon, first, first + count))
            first += count
        self.crops.clear()
        self.transforms.clear()
        self.spools.clear()


@dataclasses.dataclass
class PendingRun:
    """A run of the dominant face from frame ``start``: its ``second_face`` flags, one result spool
    per backend, and ``end`` once its last frame is seen."""

    start: int
    spools: list[ResultSpool]
    flags: list[bool] = dataclasses.field(default_factory=list)
    end: int | None = None

    @property
    def complete(self) -> bool:
        """Its last frame is seen and every backend's results of all its frames are spooled."""
        return self.end is not None and all(spool.n_frames == self.end - self.start for spool in self.spools)

    def tracks(self, backends: Sequence[ReconstructionBackend], track_rules: TrackRules,
               numbers: Iterator[int]) -> Iterator[TrackPart]:
        """The run's tracks, numbered by ``numbers``; closes the spools."""
        assert self.end is not None
        bounds = split_run(self.start, self.end, track_rules.max_track_frames)
        sizes = [high - low for low, high in bounds]
        with contextlib.ExitStack() as open_spools:
            parts = zip(*(open_spools.enter_context(spool).read_parts(sizes) for spool in self.spools))
            for (low, high), recons in zip(bounds, parts):
                yield TrackPart(next(numbers), low, high, [_finished(b, r) for b, r in zip(backends, recons)],
                                np.array(self.flags[low - self.start:high - self.start]))

    def close(self) -> None:
        for spool in self.spools:
            spool.close()


def _finished(backend: ReconstructionBackend, track: Reconstruction) -> Reconstruction:
    """``backend``'s ``finish_track`` of ``track``, checked like its ``reconstruct`` output."""
    finished = backend.finish_track(track)
    check_output(backend, finished, len(track.confidence), finished=True)
    return finished


class ResultSpool:
    """Per-frame results of one run, in a temporary file so that memory does not grow with the
    run's length (a run may span a whole video); read back in equal parts of at most
    ``max_track_frames``. Arrays are stored in NumPy's format, without pickles."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()
        self._chunks: list[tuple[str, ...]] = []  # the fields each chunk holds (coeffs may be None)
        self.n_frames = 0

    def add(self, recon: Reconstruction) -> None:
        names = tuple(f.name for f in dataclasses.fields(recon) if getattr(recon, f.name) is not None)
        for name in names:
            np.lib.format.write_array(self._file, getattr(recon, name), allow_pickle=False)
        self._chunks.append(names)
        self.n_frames += len(recon.confidence)

    def read_parts(self, sizes: list[int]) -> Iterator[Reconstruction]:
        """Consecutive parts of ``sizes`` frames from the first frame on."""
        self._file.seek(0)
        chunks = iter(self._chunks)
        held: list[Reconstruction] = []
        n_held = 0
        for size in sizes:
            while n_held < size:
                names = next(chunks)
                chunk = Reconstruction(**{name: np.lib.format.read_array(self._file, allow_pickle=False)
                                          for name in names})
                held.append(chunk)
                n_held += len(chunk.confidence)
            joined = Reconstruction.concatenate(held)
            yield _frames(joined, 0, size)
            held, n_held = [_frames(joined, size, n_held)], n_held - size

    def __enter__(self) -> ResultSpool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()


def _frames(recon: Reconstruction, start: int, end: int) -> Reconstruction:
    return dataclasses.replace(recon, **{f.name: getattr(recon, f.name)[start:end] for f in dataclasses.fields(recon)
                                         if getattr(recon, f.name) is not None})


def _sample(item: InputItem, split: str, backend: ReconstructionBackend, track: TrackPart, recon: Reconstruction,
            pcm: np.ndarray, audio_offset: float, clip_index: int, start: int, end: int, clip_rules: ClipRules) -> Sample:
    """The sample of frames ``start..end-1`` of ``track`` (indices relative to the track) from
    ``backend``'s reconstruction ``recon``."""
    topology = backend.topology
    first, last = track.start + start, track.start + end
    mesh = recon.mesh[start:end]
    clip_audio = pcm[first * SAMPLES_PER_FRAME:last * SAMPLES_PER_FRAME]
    offset = estimate_offset(mesh, clip_audio, topology)
    meta = SampleMeta(
        key=make_key(item.speaker, item.video, item.utterance, track.index, clip_index), split=split,
        speaker=item.speaker, video=item.video, utterance=item.utterance, track=track.index, clip=clip_index,
        source_uri=item.uri, start_time=first / FPS, end_time=last / FPS, n_frames=end - start,
        n_samples=(end - start) * SAMPLES_PER_FRAME, backend=backend.name, backend_version=backend.version,
        topology=topology.name, confidence_mean=round(float(recon.confidence[start:end].mean()), 6),
        lip_motion=round(lip_motion(mesh, topology.lip_idx), 6),
        jitter=round(jitter(mesh, topology.upper_face_idx), 6), av_offset=offset.offset,
        av_offset_confidence=round(offset.confidence, 6), av_offset_reason=offset.reason,
        av_offset_ok=offset.offset is None or abs(offset.offset) <= clip_rules.max_av_offset,
        audio_start_offset=round(audio_offset, 6))
    return Sample(meta=meta, mesh=mesh, pose=recon.pose[start:end], audio=clip_audio, lmk2d=recon.lmk2d[start:end],
                  coeffs=None if recon.coeffs is None else recon.coeffs[start:end], neutral=recon.neutral)
