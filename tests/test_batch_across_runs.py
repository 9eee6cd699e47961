"""Batches across runs for backends whose frames are independent (``frames_independent``): a video
of several short shots of real footage, built with MediaPipe and DECA together, gives the same
samples, byte for byte, whether DECA's batches cross run boundaries or stop at each run, and
DECA's batches are then full; the bench of these batches runs in short mode."""

import itertools
import os
import re

import numpy as np
import pytest
from conftest import write_video

from voxmesh.pipelines.ingest.audio import load_audio
from voxmesh.pipelines.ingest.clips import ClipRules
from voxmesh.pipelines.ingest.faces import TrackRules
from voxmesh.pipelines.ingest.frames import iter_images
from voxmesh.pipelines.ingest.item import InputItem
from voxmesh.pipelines.ingest.process import process_input
from voxmesh.recon import Reconstruction
from voxmesh.recon.deca import DecaBackend

CHUNK = 6
# (clip, first frame, frames): four shots, each cut from the one before
SHOTS = (("hdtf_aoc_512_25fps.mp4", 0, 5), ("retalking2_844_25fps.mp4", 0, 8),
         ("hdtf_aoc_512_25fps.mp4", 100, 4), ("retalking2_844_25fps.mp4", 60, 6))


class RecordedDeca(DecaBackend):
    """DECA run one frame at a time inside each batch it is given (so that a frame's bytes do not
    depend on the batch it came in: a batched matrix product may round differently for another
    batch size), recording the batch sizes."""

    def __init__(self, checkpoint: str, model: str, across_runs: bool):
        super().__init__(checkpoint, model)
        self.frames_independent = across_runs
        self.batches: list[int] = []

    def reconstruct(self, frames: np.ndarray) -> Reconstruction:
        self.batches.append(len(frames))
        return Reconstruction.concatenate([super(RecordedDeca, self).reconstruct(frame[None]) for frame in frames])


@pytest.fixture(scope="module")
def short_shots(media_dir, tmp_path_factory) -> str:
    import cv2
    frames, audio = [], []
    for name, first, count in SHOTS:
        path = os.path.join(media_dir, name)
        decoded = itertools.islice(iter_images(path), first, first + count)
        frames += [cv2.resize(f, (384, 384), interpolation=cv2.INTER_AREA) for f in decoded]
        audio.append(load_audio(path).samples[first * 640:(first + count) * 640])
    path = str(tmp_path_factory.mktemp("shots") / "shots.mp4")
    write_video(path, np.stack(frames), audio=np.concatenate(audio))
    return path


def build(models, path: str, deca: RecordedDeca):
    mediapipe, detector = models
    deca.setup()
    rules = ClipRules(min_seconds=0.12)  # clips of 3 frames and more: every short track gives one
    return process_input(InputItem(path, "spk", "vid", "0"), "train", [mediapipe, deca], detector, rules,
                         TrackRules(max_track_frames=5), chunk_size=CHUNK)


def test_batches_across_runs_give_each_run_its_own_results(models, short_shots, deca_files):
    across = RecordedDeca(*deca_files, across_runs=True)
    per_run = RecordedDeca(*deca_files, across_runs=False)
    batched, reference = build(models, short_shots, across), build(models, short_shots, per_run)

    n_frames = sum(count for _, _, count in SHOTS)
    assert sum(across.batches) == sum(per_run.batches) == n_frames  # every shot's every frame tracked
    assert n_frames % CHUNK and across.batches == [CHUNK] * (n_frames // CHUNK) + [n_frames % CHUNK]  # full
    assert len(per_run.batches) > len(across.batches)
    assert sorted({s.meta.track for s in reference.samples}) == list(range(6))  # 4 runs, 2 cut in 2 parts
    assert reference.failures == batched.failures == []
    assert [s.meta for s in batched.samples] == [s.meta for s in reference.samples]
    assert {s.meta.backend for s in reference.samples} == {"mediapipe", "deca"}
    for ours, theirs in zip(batched.samples, reference.samples):
        for name in ("mesh", "pose", "audio", "lmk2d", "coeffs", "neutral"):
            a, b = getattr(ours, name), getattr(theirs, name)
            assert (a is None and b is None) or a.tobytes() == b.tobytes(), (ours.meta.key, name)
    deca_meshes = [s.mesh for s in reference.samples if s.meta.backend == "deca"]
    assert not np.array_equal(deca_meshes[0][0], deca_meshes[1][0])  # the shots' frames differ


def test_the_deca_batch_bench_runs_in_short_mode(run_bench):
    last = run_bench("bench_deca_batches.py", "--short")
    assert re.fullmatch(r"deca_fps_across_runs=[0-9.]+ deca_fps_per_run=[0-9.]+ device=cpu frames=12", last), last
