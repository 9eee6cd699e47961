"""`voxmesh build` on the real clips plus generated bad inputs, then `voxmesh validate`, then the
shards read back with webdataset as a user would."""

import json
import os
import re
import shutil
import signal
import stat
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
    umask = os.umask(0o022)  # the usual one, whatever the machine's: the files' modes are checked below
    try:
        code = main(["build", "--input", str(inputs), "--output", output, "--workers", "2", *SHARDING])
    finally:
        os.umask(umask)
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


def test_the_datasets_files_are_as_readable_as_a_plain_write_makes_them(built, tmp_path):
    """Files are written to private temporary files (0600) and renamed into place; the dataset's
    files still get the permissions of the process's umask (0o022 in this build: 0644), so that a
    shared dataset can be read."""
    modes = {os.path.relpath(os.path.join(d, f), built[1]): stat.S_IMODE(os.stat(os.path.join(d, f)).st_mode)
             for d, _, names in os.walk(built[1]) for f in names}
    assert len(modes) >= 7 and set(modes.values()) == {0o644}, modes


def test_wids_index_gives_random_access_to_the_samples(built):
    import glob

    import wids
    output = built[1]
    index = [p for p in glob.glob(os.path.join(output, "**", "*.json"), recursive=True)
             if "wids" in os.path.relpath(p, output) and "train" in os.path.basename(p)]
    assert len(index) == 1, index
    dataset = wids.ShardListDataset(index[0])
    manifest = pq.read_table(os.path.join(output, "manifest.parquet")).to_pylist()
    train_keys = sorted(r["key"] for r in manifest if r["split"] == "train")
    assert len(dataset) == len(train_keys) > 0
    assert sorted(dataset[i]["__key__"] for i in range(len(dataset))) == train_keys
    last = dataset[len(dataset) - 1]  # random access, not a stream
    assert {".mesh.npy", ".audio.npy", ".meta.json"} <= set(last), sorted(last)


def test_stats_report_renders_non_empty_plots(built, capsys, tmp_path):
    import re

    from PIL import Image
    output, report = built[1], str(tmp_path / "report")  # the shared dataset stays as built
    assert main(["stats", output, "--report", report]) == 0
    printed = capsys.readouterr().out
    assert "clips: 3" in printed and "failures_by_reason" in printed
    with open(os.path.join(report, "index.html")) as f:
        images = re.findall(r'<img src="([^"]+)"', f.read())
    assert len(images) >= 5  # lengths, speakers, head pose, confidence, failures
    for name in images:
        pixels = np.asarray(Image.open(os.path.join(report, name)).convert("L"), dtype=float)
        assert pixels.shape[0] > 100 and pixels.std() > 5, name  # drawn on, not blank


def test_preview_renders_mesh_beside_source_with_the_audio(built, tmp_path, capfd):
    import av
    output = built[1]
    row = pq.read_table(os.path.join(output, "manifest.parquet")).to_pylist()[0]
    out = str(tmp_path / "preview.mp4")
    assert main(["preview", output, row["key"], "-o", out]) == 0
    with av.open(out) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.width, video.height) == (768, 384) and audio.sample_rate == 16000
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video)]
        container.seek(0)
        sound = np.concatenate([f.to_ndarray().ravel() for f in container.decode(audio)])
    assert len(frames) == row["n_frames"]
    assert abs(len(sound) - row["n_frames"] * 640) <= 2048 and np.abs(sound).max() > 0.01  # the clip's speech
    mesh_half = np.stack(frames)[:, :, 384:].astype(float)
    assert mesh_half.std() > 10 and np.abs(np.diff(mesh_half, axis=0)).mean() > 0.05  # a face that moves
    keys = pq.read_table(os.path.join(output, "manifest.parquet"), columns=["key"]).column("key").to_pylist()
    capfd.readouterr()
    assert main(["preview", output, "nope_x_y_000_000", "-o", out]) == 2  # no such speaker: what keys look like
    err = capfd.readouterr().err
    assert f"no sample 'nope_x_y_000_000' in {output}/manifest.parquet; its {len(keys)} keys look like {min(keys)!r}" in err
    typo = row["key"][:-1] + ("1" if row["key"][-1] != "1" else "2")  # a clip number off: its speaker's closest keys
    assert typo not in keys and main(["preview", output, typo, "-o", out]) == 2
    err = capfd.readouterr().err
    assert f"no sample {typo!r} in {output}/manifest.parquet; closest: " in err
    assert repr(row["key"]) in err.split("closest: ")[1].splitlines()[0]


def test_a_preview_says_when_its_source_is_gone_and_wants_an_mp4(built, tmp_path, capfd):
    moved = str(tmp_path / "moved")
    shutil.copytree(built[1], moved)
    with open(os.path.join(moved, "dataset.json")) as f:
        record = json.load(f)
    record["input_root"] = str(tmp_path / "gone")
    with open(os.path.join(moved, "dataset.json"), "w") as f:
        json.dump(record, f)
    key = pq.read_table(os.path.join(moved, "manifest.parquet")).to_pylist()[0]["key"]
    out = str(tmp_path / "new" / "preview.mp4")  # its folder is made
    assert main(["preview", moved, key, "-o", out]) == 0
    err = capfd.readouterr().err
    assert f"the preview of {key} shows its meshes only: its source video {tmp_path / 'gone'}" in err, err
    import av
    with av.open(out) as container:
        assert (container.streams.video[0].width, container.streams.video[0].height) == (384, 384)
    for wrong in (str(tmp_path / "preview.gif"), str(tmp_path)):
        assert main(["preview", moved, key, "-o", wrong]) == 2
        assert f"-o {wrong}: give the .mp4 file to write" in capfd.readouterr().err


@pytest.fixture(scope="module")
def sync_weights(built, tmp_path_factory):
    weights = str(tmp_path_factory.mktemp("syncnet") / "sync.pt")
    assert main(["sync", "train", "--data", built[1], "--out", weights, "--steps", "150"]) == 0
    return weights


@pytest.fixture(scope="module")
def style_weights(built, tmp_path_factory):
    weights = str(tmp_path_factory.mktemp("style") / "style.pt")
    assert main(["style", "train", "--data", built[1], "--out", weights, "--steps", "100"]) == 0
    return weights


def test_syncnet_trained_briefly_ranks_true_alignment_above_far_shifts(built, sync_weights, capsys):
    """A functional check of training and scoring on the clips it trained on; it says nothing
    about generalization."""
    from voxmesh.metrics.syncnet import (
        Clip,
        audio_embeddings,
        lip_sync_error,
        load_syncnet,
        motion_embeddings,
        offset_similarities,
    )
    from voxmesh.schemas import iter_samples
    model, topology = load_syncnet(sync_weights)
    for sample in iter_samples(built[1]):
        clip = Clip.from_arrays(sample.mesh, sample.audio, topology)
        similarities = offset_similarities(model, clip)
        true, far = similarities[:, 15], np.concatenate([similarities[:, :11], similarities[:, 20:]], axis=1)
        assert (true[:, None] > far).all(axis=1).mean() > 0.6, sample.key  # most windows
        measure = lip_sync_error(motion_embeddings(model, clip), audio_embeddings(model, clip))
        assert abs(measure.offset) <= 1 and measure.confidence > 0, (sample.key, measure)
        late = Clip.from_arrays(sample.mesh, np.roll(sample.audio, 8 * 640), topology)  # audio 8 frames late
        moved = lip_sync_error(motion_embeddings(model, late), audio_embeddings(model, late))
        assert abs(moved.offset - 8) <= 1, (sample.key, moved)
    assert main(["sync", "score", "--data", built[1], "--weights", sync_weights]) == 0
    printed = capsys.readouterr().out
    assert printed.count("LSE-D") >= 3 and printed.count("LSE-C") >= 3


def test_style_network_trained_briefly_tells_the_training_speakers_apart(built, style_weights):
    """A functional check on the clips it trained on (three speakers, one clip each)."""
    import torch

    from voxmesh.metrics.style import load_style
    from voxmesh.schemas import iter_samples
    from voxmesh.schemas.errors import ConfigError
    model = load_style(style_weights)
    samples = list(iter_samples(built[1]))
    assert sorted(model.speakers) == sorted(s.meta.speaker for s in samples)
    for sample in samples:
        logits = model.net.classifier(torch.from_numpy(model.window_embeddings(sample.mesh)))
        recognized = np.array(model.speakers)[logits.argmax(dim=1).numpy()]
        assert (recognized == sample.meta.speaker).mean() > 0.8, sample.key
    from voxmesh.metrics.style import train_style
    with pytest.raises(ConfigError, match="at least 2 speakers"):
        train_style([samples[0].mesh], [samples[0].meta.speaker], model.topology, steps=1)


def test_eval_reports_zero_error_for_the_truth_and_more_for_noise(built, sync_weights, style_weights, tmp_path,
                                                                   capsys):
    from voxmesh.schemas import iter_samples
    output = built[1]
    truth, noisy = tmp_path / "truth", tmp_path / "noisy"
    truth.mkdir()
    noisy.mkdir()
    rng = np.random.default_rng(0)
    for sample in iter_samples(output):
        np.save(truth / f"{sample.key}.npy", sample.mesh)
        samples = sample.mesh[None] + rng.normal(0, 0.05, (3, *sample.mesh.shape)).astype(np.float32)
        np.save(noisy / f"{sample.key}.npy", samples)
    np.save(noisy / "unknown_key_x_000_000.npy", np.zeros((5, 478, 3), np.float32))
    networks = ["--sync-weights", sync_weights, "--style-weights", style_weights]
    assert main(["eval", "--pred", str(truth), "--ref", output, *networks]) == 0
    table = json.load(open(truth / "results.json"))
    exact = table["truth"]
    assert exact["clips"] == 3 and exact["samples"] == 1
    assert exact["lip_vertex_error"] == exact["lip_vertex_error_text"] == exact["fdd"] == 0
    assert abs(exact["fd_sync"]) < 1e-6 and abs(exact["fd_style"]) < 1e-6 and exact["lse_c"] > 0
    # three speakers with one clip each: no clip of another speaker to match against
    assert "style_matching" not in exact and any("style matching" in note for note in exact["notes"])
    template_only, shuffled = table["context: template only"], table["context: ground truth, shuffled audio"]
    assert template_only["clips"] == shuffled["clips"] == 3
    assert template_only["lip_vertex_error"] > 0 and shuffled["lip_vertex_error"] > 0
    # a still face has no correlation peak: no |offset| of 0 that would read as perfect sync
    assert "mean_abs_av_offset" not in template_only and "mean_abs_av_offset" in exact
    assert any(note.startswith("|offset|: 3 of 3 clips have no correlation peak") for note in template_only["notes"])
    assert shuffled["lse_c"] < exact["lse_c"]  # real motion that does not follow this audio
    assert main(["eval", "--pred", str(noisy), "--ref", output, "--out", str(tmp_path / "noisy_results")]) == 0
    noise = json.load(open(tmp_path / "noisy_results.json"))["noisy"]
    assert noise["samples"] == 3 and noise["lip_vertex_error_std"] > 0  # mean and spread over the 3 samples
    assert noise["lip_vertex_error"] > 0.001 and noise["diversity"] > 0
    assert noise["coverage_lip_error"] <= noise["lip_vertex_error"] + 1e-12
    assert noise["mean_sample_lip_error"] < noise["lip_vertex_error"]  # averaging samples cancels noise
    assert noise["predictions_without_reference"] == ["unknown_key_x_000_000"]
    header = open(tmp_path / "noisy_results.md").readline()
    assert header.startswith("| model | LVE (CodeTalker code: max sq. L2, frames pooled) | "
                             "LVE (MeshTalk/FaceFormer text: max L2) | MVE | FDD (CodeTalker code: gt - pred")
    assert "unknown_key_x_000_000.npy has no reference" in capsys.readouterr().err


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


def test_a_resume_with_other_options_or_into_a_foreign_folder_is_refused_and_deletes_nothing(built, tmp_path, capsys):
    """--resume continues the build that wrote the folder (its options in _meta/build.json) or
    nothing: other options would mix two configurations in one dataset, and a folder no build
    wrote may hold a person's files."""
    inputs, output = built
    before = dataset_bytes(output)
    resume = ["--output", output, *SHARDING, "--resume"]
    assert main(["build", "--input", inputs, *resume, "--min-clip-seconds", "6"]) == 2
    assert "clip_rules.min_seconds 2.0 there, 6.0 now" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    shutil.copy(os.path.join(inputs, REAL_CLIPS[0]), tmp_path / "other")
    assert main(["build", "--input", str(tmp_path / "other"), *resume]) == 2
    assert "another --input" in capsys.readouterr().err
    assert dataset_bytes(output) == before

    (tmp_path / "foreign" / "shards").mkdir(parents=True)
    (tmp_path / "foreign" / "shards" / "mine.tar").write_bytes(b"a person's file")
    assert main(["build", "--input", inputs, "--output", str(tmp_path / "foreign"), "--resume"]) == 2
    assert "holds no voxmesh build to resume" in capsys.readouterr().err
    assert (tmp_path / "foreign" / "shards" / "mine.tar").read_bytes() == b"a person's file"


def test_the_resume_record_names_a_local_input_however_it_is_written(tmp_path, monkeypatch):
    from voxmesh.pipelines.build.pipeline import BuildConfig, _build_record
    monkeypatch.chdir(tmp_path)
    records = [_build_record(BuildConfig(input=source, output="out"))
               for source in ("videos", "videos/", "./videos", str(tmp_path / "videos"))]
    assert all(record == records[0] for record in records)
    assert _build_record(BuildConfig(input="other", output="out")) != records[0]


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


def test_ctrl_c_ends_a_build_with_one_line_and_a_resume_finishes_it(built, tmp_path):
    """A terminal's Ctrl-C reaches the launcher and its local workers (SIGINT to the process
    group); their harnesses and threads report it, but the terminal shows one line saying what to
    do, and the exit status says interrupted (130)."""
    inputs, output = built
    resumed = str(tmp_path / "resumed")
    command = [sys.executable, "-m", "voxmesh", "build", "--input", inputs, "--output", resumed,
               "--workers", "2", *SHARDING]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    record = os.path.join(resumed, "_meta", "build.json")  # written once the inputs are planned
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and not os.path.exists(record):
        time.sleep(0.05)
    time.sleep(1.5)  # the workers start
    assert process.poll() is None, "the build ended before it could be interrupted"
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2, err
    assert err.strip().splitlines()[-1].startswith("voxmesh build: interrupted; ") and "--resume" in err

    assert main(["build", "--input", inputs, "--output", resumed, "--workers", "2", *SHARDING, "--resume"]) == 0
    assert dataset_bytes(resumed) == dataset_bytes(output)


def test_a_killed_build_resumed_ends_with_the_same_dataset(built, tmp_path, capfd):
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

    capfd.readouterr()
    assert main(["build", "--input", inputs, "--output", resumed, "--workers", "2", *SHARDING, "--resume"]) == 0
    kept = re.search(r"resuming: (\d+) of the (\d+) parts are committed and kept; building the other (\d+)",
                     capfd.readouterr().err)
    assert kept and int(kept[1]) == len(committed) and int(kept[1]) + int(kept[3]) == int(kept[2]), kept
    first, second = dataset_bytes(output), dataset_bytes(resumed)
    assert sorted(first) == sorted(second)  # no temporary file or part left, nothing missing
    assert [name for name in first if first[name] != second[name]] == []
