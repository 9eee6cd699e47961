"""The build through Beam's own local job service, with workers in a separate worker-pool process:
the job must be serializable and its code staged through setup.py, as Flink, Spark and Dataflow
runners need. Inputs and output are on a local S3-compatible server, so the launcher and the
workers share no folder at all."""

import os
import shutil
import subprocess
import sys

import pytest
from s3_server import free_port, upload_folder, wait_for_port

from voxmesh.cli import main
from voxmesh.schemas import storage
from voxmesh.schemas.tables import read_parquet

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


@pytest.fixture
def beam_services(tmp_path, s3_endpoint):  # after the server: the workers inherit its AWS variables
    job_port, pool_port = free_port(), free_port()
    staging = tmp_path / "staging"
    log = open(tmp_path / "services.log", "ab")
    # the worker pool starts each SDK worker as `python -c ...`: the first python on PATH must be ours
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    processes = [
        subprocess.Popen([sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main",
                          "--port", str(job_port), "--staging_dir", str(staging)],
                         stdout=log, stderr=subprocess.STDOUT, env=env),
        subprocess.Popen([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                          "--service_port", str(pool_port)], stdout=log, stderr=subprocess.STDOUT, env=env),
    ]
    try:
        wait_for_port(job_port)
        wait_for_port(pool_port)
        yield job_port, pool_port, staging
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        log.close()


def test_build_runs_on_the_portable_runner_with_staged_code(media_dir, beam_services, bucket, tmp_path):
    job_port, pool_port, staging = beam_services
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(os.path.join(media_dir, "retalking2_844_25fps.mp4"), inputs / "clip.mp4")
    (inputs / "broken.mp4").write_bytes(b"not a video")
    upload_folder(str(inputs), f"{bucket}/inputs")
    output = f"{bucket}/out"
    code = main(["build", "--input", f"{bucket}/inputs/", "--output", output,
                 "--runner=PortableRunner", f"--job_endpoint=localhost:{job_port}",
                 "--environment_type=EXTERNAL", f"--environment_config=localhost:{pool_port}",
                 f"--setup_file={os.path.join(ROOT, 'setup.py')}"])
    assert code == 0
    assert main(["validate", output]) == 0
    assert len(read_parquet(f"{output}/manifest.parquet")) == 1
    assert [f["reason"] for f in read_parquet(f"{output}/failures.parquet").to_pylist()] == ["not_a_video"]
    assert not storage.list_names(f"{output}/parts")
    staged = [name for _, _, names in os.walk(staging) for name in names]
    assert any(name.endswith("workflow.tar.gz") for name in staged), staged  # the sdist built from setup.py


def test_a_job_server_that_does_not_answer_is_one_line_before_anything_is_written(media_dir, tmp_path, capsys):
    """Beam's portable runner waits for its job server without end, printing progress lines of no
    progress; the launcher tries the connection first."""
    port = free_port()  # nothing listens there
    output = tmp_path / "out"
    assert main(["build", "--input", media_dir, "--output", str(output), "--runner=PortableRunner",
                 f"--job_endpoint=localhost:{port}", "--environment_type=LOOPBACK"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"voxmesh build: --job_endpoint localhost:{port}: no job server answers there (")
    assert error.count("\n") == 0 and error.endswith("start the runner's job server (e.g. "
                                                     "apache/beam_flink1.18_job_server) or fix the host:port")
    assert not output.exists()
