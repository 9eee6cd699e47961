"""`voxmesh build` on the real clips plus generated bad inputs, then `voxmesh validate`, then the
shards read back with webdataset as a user would."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from conftest import REAL_CLIPS, write_video

from voxmesh.cli import main
from voxmesh.pipelines.ingest.audio import load_audio
from voxmesh.pipelines.ingest.probe import probe
from voxmesh.schemas import get_topology, shard_paths

UPPER_LIP_INNER, LOWER_LIP_INNER = 13, 14
SHARDING = ["--inputs-per-part", "2", "--shard-max-samples", "2"]  # several parts and shards
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
    code = main(["build", "--input", str(inputs), "--output", output, "--workers", "2", *SHARDING])
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
    assert set(frames_per_source) == set(REAL_CLIPS)  # relative to the input root
    for uri, n_frames in frames_per_source.items():  # the whole video, or as far as its audio goes
        path = os.path.join(inputs, uri)
        duration = min(probe(path).duration, len(load_audio(path).samples) / 16000)
        assert abs(n_frames - 25 * duration) <= 1, uri


def test_rerun_into_the_same_folder_needs_resume(built, capsys):
    inputs, output = built
    assert main(["build", "--input", inputs, "--output", output]) == 2
    assert "--resume" in capsys.readouterr().err


def dataset_bytes(output: str) -> dict[str, bytes]:
    """Every file that must be identical between equal builds (dataset.json records paths)."""
    files = {}
    for folder, _, names in os.walk(output):
        for name in names:
            path = os.path.join(folder, name)
            if name != "dataset.json":
                with open(path, "rb") as f:
                    files[os.path.relpath(path, output)] = f.read()
    return files


def test_a_second_build_of_the_same_inputs_is_byte_identical(built, tmp_path):
    inputs, output = built
    again = str(tmp_path / "again")
    assert main(["build", "--input", inputs, "--output", again, "--workers", "1", *SHARDING]) == 0
    first, second = dataset_bytes(output), dataset_bytes(again)
    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []


def test_a_killed_build_resumed_ends_with_the_same_dataset(built, tmp_path):
    inputs, output = built
    resumed = str(tmp_path / "resumed")
    command = [sys.executable, "-m", "voxmesh", "build", "--input", inputs, "--output", resumed,
               "--workers", "2", *SHARDING]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = os.path.join(resumed, "_meta", "parts")  # the parts' stats: their commit markers
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if os.path.isdir(parts) and any(n.endswith(".stats.json") for n in os.listdir(parts)):
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    committed = [n for n in os.listdir(parts) if n.endswith(".stats.json")]
    inputs_done = sum(len(json.load(open(os.path.join(parts, n)))["inputs"]) for n in committed)
    assert committed and inputs_done < len(os.listdir(inputs)), "the build was not interrupted mid-way"
    assert not os.path.exists(os.path.join(resumed, "manifest.parquet"))

    assert main(["build", "--input", inputs, "--output", resumed, "--workers", "2", *SHARDING, "--resume"]) == 0
    first, second = dataset_bytes(output), dataset_bytes(resumed)
    assert sorted(first) == sorted(second)  # no temporary file or part left, nothing missing
    assert [name for name in first if first[name] != second[name]] == []
