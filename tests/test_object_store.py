"""Builds whose inputs and output are on an S3-compatible server (moto's standalone server on
127.0.0.1), read back by the dataset commands, killed and resumed, against a local build of the
same inputs; commit markers when a writer dies while uploading; one-line errors before any work."""

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from s3_server import stored_bytes, upload_folder

from voxmesh.cli import main
from voxmesh.schemas import committed_stats, iter_samples, iter_tar_samples, shard_paths, storage
from voxmesh.schemas.tables import read_parquet

SHARDING = ["--inputs-per-part", "1", "--shard-max-samples", "1", "--workers", "2"]


def local_bytes(folder: str) -> dict[str, bytes]:
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            with open(os.path.join(root, name), "rb") as f:
                files[os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")] = f.read()
    return files


def content(files: dict[str, bytes], input_root: str) -> dict[str, object]:
    """What a dataset holds with its input root replaced by INPUT: tar members, JSON, table rows
    (the files record their inputs' URIs, which differ between a local and an s3 build)."""
    def text(data: bytes) -> str:
        return data.decode("utf-8").replace(input_root, "INPUT")
    held: dict[str, object] = {}
    for name, data in files.items():
        if name.endswith(".tar"):
            held[name] = [(key, {m: text(v) if m.endswith(".json") else v for m, v in members.items()})
                          for key, members in iter_tar_samples(io.BytesIO(data))]
        elif name.endswith(".parquet"):
            rows = pq.read_table(pa.BufferReader(data)).to_pylist()
            held[name] = [{k: v.replace(input_root, "INPUT") if isinstance(v, str) else v for k, v in row.items()}
                          for row in rows]
        elif name not in ("dataset.json", "_meta/build.json"):  # they record the output's or the input's location
            held[name] = text(data)
    return held


@pytest.fixture(scope="module")
def inputs(media_dir, tmp_path_factory):
    """Two real clips and one broken file, as a local folder."""
    folder = tmp_path_factory.mktemp("inputs")
    shutil.copy(os.path.join(media_dir, "retalking2_844_25fps.mp4"), folder / "clip.mp4")
    shutil.copy(os.path.join(media_dir, "retalking2_844_25fps.mp4"), folder / "clip2.mp4")
    (folder / "broken.mp4").write_bytes(b"not a video")
    return str(folder)


@pytest.fixture(scope="module")
def s3_build(inputs, s3_endpoint):
    """The inputs uploaded to a bucket and built into it: ``(bucket, output)``."""
    import boto3
    name = "voxmesh-build"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    upload_folder(inputs, f"s3://{name}/inputs")
    output = f"s3://{name}/dataset"
    assert main(["build", "--input", f"s3://{name}/inputs/", "--output", output, *SHARDING]) == 0
    return f"s3://{name}", output


def test_a_build_from_s3_to_s3_holds_what_the_local_build_holds_and_reads_back(inputs, s3_build, tmp_path, capsys):
    bucket, output = s3_build
    local = str(tmp_path / "local")
    assert main(["build", "--input", inputs + os.sep, "--output", local, *SHARDING]) == 0  # "/" as in s3
    remote_files, local_files = stored_bytes(output), local_bytes(local)
    assert sorted(remote_files) == sorted(local_files)  # no part, no temporary object left
    assert content(remote_files, f"{bucket}/inputs") == content(local_files, inputs)
    assert remote_files["_meta/wids-train.json"] == local_files["_meta/wids-train.json"]
    # URIs relative to the input root: the same in both builds
    assert {r["source_uri"] for r in read_parquet(f"{output}/manifest.parquet").to_pylist()} == {"clip.mp4", "clip2.mp4"}
    assert [f["reason"] for f in read_parquet(f"{output}/failures.parquet").to_pylist()] == ["not_a_video"]

    assert main(["validate", output]) == 0
    assert main(["stats", output]) == 0
    assert storage.exists(f"{output}/report/index.html") and storage.exists(f"{output}/report/head_pose.png")
    samples = list(iter_samples(output))  # webdataset over s3:// shard URLs
    assert sorted(s.meta.source_uri for s in samples) == ["clip.mp4", "clip2.mp4"]
    root = json.loads(storage.read_bytes(f"{output}/dataset.json"))["input_root"]  # where preview finds them
    assert root == f"{bucket}/inputs" and all(storage.exists(f"{root}/{s.meta.source_uri}") for s in samples)
    assert shard_paths(output) == [f"{output}/shards/{s.shard}.tar" for s in committed_stats(output) if s.samples]
    assert main(["preview", output, samples[0].key, "-o", str(tmp_path / "preview.mp4")]) == 0
    from voxmesh.models.data import DataConfig, evaluation_stream  # what train and generate read
    windows = list(evaluation_stream(DataConfig(dataset=output, window=25)))
    assert len(windows) == sum(s.meta.n_frames // 25 for s in samples if s.meta.split == "train")

    assert main(["build", "--input", f"{bucket}/inputs/", "--output", output]) == 2
    assert "--resume" in capsys.readouterr().err


def test_a_killed_s3_build_resumed_is_byte_identical_to_an_uninterrupted_one(s3_build, tmp_path):
    bucket, complete = s3_build
    output = f"{bucket}/resumed"
    # one worker: parts one after another, so a clip's part is still running when the first commits
    command = [sys.executable, "-m", "voxmesh", "build", "--input", f"{bucket}/inputs/", "--output", output,
               *SHARDING, "--workers", "1"]
    # a killed process cannot remove its temporary files (input copies, spooled tars): keep them in tmp_path
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "TMPDIR": str(tmp_path)})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if committed_stats(output, "parts"):
            break
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    parts = committed_stats(output, "parts")
    assert parts and sum(len(p.inputs) for p in parts) < 3, "the build was not interrupted mid-way"
    assert not storage.exists(f"{output}/manifest.parquet")

    assert main(["build", "--input", f"{bucket}/inputs/", "--output", output, *SHARDING, "--resume"]) == 0
    first, second = stored_bytes(complete), stored_bytes(output)
    first.pop("dataset.json"), second.pop("dataset.json")  # it records the output location
    for name in [n for n in first if n.startswith("report/")]:
        first.pop(name)  # written by `voxmesh stats` in the other test
    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []
    assert main(["validate", output]) == 0


KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from voxmesh.schemas import SampleTarWriter, shards, storage
    stage, output = sys.argv[1], sys.argv[2]
    if stage == "upload":  # die with the tar's upload open, after 6 MiB were sent
        target = storage._filesystems().create(output + "/shards/train-000000.tar")
        target.write(os.urandom(6 * 2 ** 20))
        target.flush()
    else:  # die between the tar's upload and its stats JSON (the commit marker)
        shards.write_atomic = lambda *_: os.kill(os.getpid(), signal.SIGKILL)
        with SampleTarWriter(output, "train", 0, ["input.mp4"]) as writer:
            writer.commit()
    os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.parametrize("stage", ["upload", "commit"])
def test_a_writer_killed_while_uploading_leaves_nothing_a_reader_takes_for_a_shard(bucket, stage, tmp_path):
    output = f"{bucket}/dataset"
    result = subprocess.run([sys.executable, "-c", KILLED_WRITER, stage, output], capture_output=True,
                            env={**os.environ, "TMPDIR": str(tmp_path)})  # its spooled tar stays there
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()[-2000:]
    names = storage.list_names(f"{output}/shards")
    assert names == ([] if stage == "upload" else ["train-000000.tar"])  # an upload appears whole or not at all
    assert committed_stats(output) == [] and shard_paths(output) == []
    if stage == "commit":
        from voxmesh.pipelines.build.pipeline import remove_uncommitted_files
        remove_uncommitted_files(output)  # what --resume does first
        assert storage.list_names(f"{output}/shards") == []


def test_unreachable_bucket_or_missing_credentials_fail_before_any_work(bucket, tmp_path, capsys, monkeypatch):
    assert main(["build", "--input", "s3://no-such-bucket-voxmesh/inputs/", "--output", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "s3://no-such-bucket-voxmesh/inputs/" in error and "AWS_ENDPOINT_URL" in error
    assert not (tmp_path / "out").exists()

    assert main(["build", "--input", f"{bucket}/listing.csv", "--output", f"{bucket}/out"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and f"{bucket}/listing.csv" in error

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert main(["build", "--input", f"{bucket}/inputs/", "--output", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "credentials" in error and "AWS_ACCESS_KEY_ID" in error


@pytest.mark.parametrize("verb", ["validate", "stats", "preview"])
def test_a_dataset_behind_an_endpoint_that_does_not_answer_is_one_line_not_minutes_of_retries(verb, capsys,
                                                                                              monkeypatch, tmp_path):
    """Beam's S3 calls retry a refused connection with exponential backoff for minutes; every
    command that reads a bucket first checks it answers (once per bucket and process)."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    for name, value in (("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed}"), ("AWS_ACCESS_KEY_ID", "k"),
                        ("AWS_SECRET_ACCESS_KEY", "s"), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    extra = ["key", "-o", str(tmp_path / "p.mp4")] if verb == "preview" else []
    assert main([verb, f"s3://voxmesh-unanswered-{verb}/dataset", *extra]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and f"s3://voxmesh-unanswered-{verb}/dataset" in error
    assert f"cannot reach the bucket (Could not connect to the endpoint URL: \"http://127.0.0.1:{closed}/" in error
    assert "Parquet" not in error  # the bucket is the problem, not a table


def test_an_object_gone_before_it_is_read_is_a_missing_file_failure(bucket, tmp_path):
    storage.write_bytes(f"{bucket}/listing.csv", b"uri,speaker\ngone/clip.mp4,spk\n")
    output = str(tmp_path / "out")
    assert main(["build", "--input", f"{bucket}/listing.csv", "--output", output, "--workers", "1"]) == 0
    (failure,) = read_parquet(f"{output}/failures.parquet").to_pylist()
    # relative to the input root (the listed URIs' folder, recorded in dataset.json)
    assert failure["source_uri"] == "clip.mp4" and failure["reason"] == "missing_file"
    assert failure["detail"].startswith("clip.mp4: ")


@pytest.fixture
def no_local_backend_files(tmp_path, monkeypatch):
    from voxmesh.recon.fan3d import WEIGHTS_ENV
    from voxmesh.recon.flame import MODEL_ENV
    monkeypatch.delenv(MODEL_ENV, raising=False)
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))


def test_backend_files_travel_as_options_and_are_read_through_the_file_systems(
        bucket, fan3d_weights, no_local_backend_files, tmp_path):
    import numpy as np
    from flame_synthetic import synthetic_flame

    from voxmesh.recon import BackendUnavailable, backend_class, create_backend
    model = synthetic_flame()
    buffer = io.BytesIO()
    np.savez(buffer, **model)
    storage.write_bytes(f"{bucket}/models/flame.npz", buffer.getvalue())
    flame = create_backend("flame", {"model": f"{bucket}/models/flame.npz"})
    flame.setup()
    assert np.array_equal(flame.model.v_template.cpu().numpy(), model["v_template"])
    flame.close()

    for path in fan3d_weights.values():
        with open(path, "rb") as f:
            storage.write_bytes(f"{bucket}/models/{os.path.basename(path)}", f.read())
    options = {role: f"{bucket}/models/{os.path.basename(path)}" for role, path in fan3d_weights.items()}
    fan3d = create_backend("fan3d", options)
    fan3d.setup()
    assert fan3d.fan is not None and fan3d.depth is not None and "3DFAN4" in fan3d.version

    with pytest.raises(BackendUnavailable, match=f"flame.model={bucket}/models/gone.npz: no such file"):
        backend_class("flame", {"model": f"{bucket}/models/gone.npz"})
    with pytest.raises(BackendUnavailable, match="pass --backend-option fan3d.depth"):
        backend_class("fan3d", {"fan": options["fan"]})
    with pytest.raises(BackendUnavailable, match="has no option 'modle'"):
        backend_class("flame", {"modle": "x"})


def test_a_build_reads_the_flame_model_from_its_backend_option(bucket, media_dir, no_local_backend_files, tmp_path,
                                                               capsys):
    import numpy as np
    from flame_synthetic import synthetic_flame
    inputs = str(tmp_path / "inputs")
    os.makedirs(inputs)
    shutil.copy(os.path.join(media_dir, "retalking2_844_25fps.mp4"), os.path.join(inputs, "clip.mp4"))
    buffer = io.BytesIO()
    np.savez(buffer, **synthetic_flame())
    storage.write_bytes(f"{bucket}/flame.npz", buffer.getvalue())
    output = str(tmp_path / "out")
    assert main(["build", "--input", inputs, "--output", output, "--backend", "flame", "--workers", "1",
                 "--backend-option", f"flame.model={bucket}/flame.npz"]) == 0
    (sample,) = iter_samples(output)
    assert sample.meta.topology == "flame5023" and sample.coeffs is not None

    assert main(["build", "--input", inputs, "--output", output, "--backend-option", "flame"]) == 2
    assert "expected BACKEND.KEY=VALUE" in capsys.readouterr().err


def test_pipeline_options_alone_reach_the_launcher_and_the_workers(bucket, s3_endpoint, tmp_path, monkeypatch):
    storage.write_bytes(f"{bucket}/inputs/spk/broken.mp4", b"not a video")
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    output = f"{bucket}/out"
    options = [f"--s3_endpoint_url={s3_endpoint}", "--s3_access_key_id=voxmesh-test",
               "--s3_secret_access_key=voxmesh-test", "--runner=FnApiRunner",
               "--direct_running_mode=multi_processing", "--direct_num_workers=1"]
    try:
        assert main(["build", "--input", f"{bucket}/inputs/", "--output", output, *options]) == 0
        (failure,) = read_parquet(f"{output}/failures.parquet").to_pylist()
        assert failure["reason"] == "not_a_video"  # the worker read the object (else: missing_file)
    finally:
        storage.configure(None)  # back to the environment for the other tests
