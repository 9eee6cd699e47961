"""`voxmesh build` on the real clips plus generated bad inputs, then `voxmesh validate`, then the
shards read back with webdataset as a user would."""

import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from conftest import REAL_CLIPS, write_video
from voxmesh.cli import main
from voxmesh.pipelines.media import load_audio, probe
from voxmesh.schemas import get_topology, shard_paths

UPPER_LIP_INNER, LOWER_LIP_INNER = 13, 14
EXPECTED_FAILURES = {"zero_bytes": "not_a_video", "random_bytes": "not_a_video", "silent": "no_audio_stream",
                     "one_second": "too_short", "no_face": "no_face"}


def make_bad_inputs(folder: str) -> None:
    rng = np.random.default_rng(0)
    with open(os.path.join(folder, "zero_bytes.mp4"), "wb"):
        pass
    with open(os.path.join(folder, "random_bytes.mp4"), "wb") as f:
        f.write(rng.bytes(20000))
    noise_audio = (0.1 * rng.standard_normal(16000 * 3)).astype(np.float32)
    gray = np.full((75, 96, 96, 3), 128, np.uint8)
    write_video(os.path.join(folder, "silent.mp4"), gray)
    write_video(os.path.join(folder, "one_second.mp4"), gray[:25], audio=noise_audio[:16000])
    write_video(os.path.join(folder, "no_face.mp4"), rng.integers(0, 255, (75, 96, 96, 3), dtype=np.uint8),
                audio=noise_audio)


@pytest.fixture(scope="module")
def built(media_dir, tmp_path_factory):
    inputs = tmp_path_factory.mktemp("inputs")
    for name in REAL_CLIPS:
        shutil.copy(os.path.join(media_dir, name), inputs / name)
    make_bad_inputs(str(inputs))
    output = str(tmp_path_factory.mktemp("build") / "dataset")
    code = main(["build", "--input", str(inputs), "--output", output, "--workers", "2", "--inputs-per-shard", "2"])
    assert code == 0
    return str(inputs), output


def test_every_input_is_accounted_for(built):
    inputs, output = built
    manifest = pq.read_table(os.path.join(output, "manifest.parquet")).to_pylist()
    failures = pq.read_table(os.path.join(output, "failures.parquet")).to_pylist()
    assert {os.path.basename(r["source_uri"]) for r in manifest} == set(REAL_CLIPS)
    assert {os.path.splitext(os.path.basename(f["source_uri"]))[0]: f["reason"] for f in failures} == EXPECTED_FAILURES
    assert all(f["detail"].startswith(f["source_uri"]) for f in failures)
    counts = json.load(open(os.path.join(output, "dataset.json")))["counts"]
    assert counts["inputs"] == len(os.listdir(inputs)) == counts["inputs_with_clips"] + counts["inputs_failed"]


def test_validate_passes(built, capsys):
    assert main(["validate", built[1]]) == 0


def test_samples_read_back_with_webdataset_have_the_right_length_and_moving_lips(built):
    inputs, output = built
    topology = get_topology("mediapipe478")
    frames_per_source = {}
    dataset = wds.WebDataset(shard_paths(output), shardshuffle=False).decode()
    for sample in dataset:
        meta = sample["meta.json"]
        mesh, audio = sample["mesh.npy"], sample["audio.npy"]
        assert mesh.shape == (meta["n_frames"], topology.n_vertices, 3) and np.isfinite(mesh).all()
        assert abs(meta["n_frames"] - 25 * (meta["end_time"] - meta["start_time"])) <= 1
        assert audio.shape == (meta["n_frames"] * 640,) and np.sqrt((audio.astype(float) ** 2).mean()) > 100
        opening = np.linalg.norm(mesh[:, UPPER_LIP_INNER] - mesh[:, LOWER_LIP_INNER], axis=1)
        assert opening.std() > 0.1, (meta["key"], opening.std())  # cm: the lips open and close
        assert meta["confidence_mean"] > 0.5 and meta["lip_motion"] > 0.5
        frames_per_source[meta["source_uri"]] = frames_per_source.get(meta["source_uri"], 0) + meta["n_frames"]
    assert set(frames_per_source) == {os.path.join(inputs, name) for name in REAL_CLIPS}
    for uri, n_frames in frames_per_source.items():  # the whole video, or as far as its audio goes
        duration = min(probe(uri).duration, len(load_audio(uri).samples) / 16000)
        assert abs(n_frames - 25 * duration) <= 1, uri


def test_rerun_into_the_same_folder_needs_resume(built, capsys):
    inputs, output = built
    assert main(["build", "--input", inputs, "--output", output]) == 2
    assert "--resume" in capsys.readouterr().err
