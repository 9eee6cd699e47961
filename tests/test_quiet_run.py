"""What a person sees on the terminal: a default run shows voxmesh's lines only; ``-v`` and
``--log-file`` bring back every library's, MediaPipe's native logs and Beam's workers' included."""

import os
import subprocess
import sys

import pytest

# lines of other programs seen in an unconfigured run (MediaPipe/absl/TFLite, Beam's worker
# harness, Beam's import-time warning)
NOISE = ("inference_feedback_manager", "XNNPACK", "absl::InitializeLog", "apache_beam", "sdk_worker",
         "apitools", "semi_persistent_directory", "W0000")


def voxmesh(*args: str) -> subprocess.CompletedProcess:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    env.pop("VOXMESH_NATIVE_STDERR", None)
    return subprocess.run([sys.executable, "-m", "voxmesh", *args], env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> subprocess.CompletedProcess:
    result = voxmesh("demo", "--output", str(tmp_path_factory.mktemp("demo")), "--workers", "1")
    assert result.returncode == 0, result.stderr
    return result


def test_a_default_run_shows_only_voxmeshs_lines(demo):
    noisy = [line for line in demo.stderr.splitlines() if any(word in line for word in NOISE)]
    assert noisy == []
    assert "parts 4/4 · inputs 4/4 · clips 3" in demo.stderr  # progress
    assert "validate: 3 samples in 1 shard, 0 problems" in demo.stdout
    assert len((demo.stdout + demo.stderr).splitlines()) <= 24  # one screen


def test_verbose_and_the_log_file_show_every_librarys_lines(tmp_path):
    inputs = tmp_path / "input"
    inputs.mkdir()
    (inputs / "not_a_video.mp4").write_bytes(b"\0" * 100)
    log_file = tmp_path / "build.log"
    result = voxmesh("-v", "--log-file", str(log_file), "build", "--input", str(inputs),
                     "--output", str(tmp_path / "out"), "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "apache_beam" in result.stderr and "DEBUG voxmesh.pipelines.build.inputs: planned 1 parts" in result.stderr
    logged = log_file.read_text()
    assert "sdk_worker" in logged  # the local worker's harness, through its native stderr
    assert "voxmesh.pipelines.build.progress: parts 1/1" in logged

