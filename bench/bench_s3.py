"""Benchmark of `voxmesh build` with inputs and output on an S3-compatible server against the same
build on local disk, in one run on the same inputs (not a test; figures go in the README).

The server is moto's standalone server on 127.0.0.1 (the tests' server): it measures what the
object-store path costs voxmesh (copying each video to a temporary file, spooling and uploading
each part and shard, listing and reading the commit markers), not a real network. The two builds
alternate (local, s3, local, s3) and each figure is the better of its two runs, frames per second
of clips produced. Usage: python bench/bench_s3.py [--repeat N] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from voxmesh.pipelines.build.pipeline import BuildConfig, local_pipeline_args, run_build
from voxmesh.schemas import read_manifest, storage

CLIPS = ("hdtf_aoc_512_25fps.mp4", "retalking2_844_25fps.mp4", "retalking4_700_30fps.mp4")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server() -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or "moto_server"
    process = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return process, endpoint
        time.sleep(0.2)
    raise TimeoutError("moto_server did not start")


def build(inputs: str, output: str, workers: int) -> tuple[float, int]:
    """Seconds and frames of one build."""
    start = time.perf_counter()
    run_build(BuildConfig(input=inputs, output=output), local_pipeline_args(workers))
    seconds = time.perf_counter() - start
    return seconds, sum(row["n_frames"] for row in read_manifest(output, ["n_frames"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--media", default=os.environ.get("VOXMESH_TEST_MEDIA", "../shared/media"))
    parser.add_argument("--repeat", type=int, default=2, help="copies of the three media clips")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()

    import boto3
    server, endpoint = start_server()
    try:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
        with tempfile.TemporaryDirectory() as work:
            inputs = os.path.join(work, "inputs")
            for copy in range(args.repeat):
                for name in CLIPS:
                    target = os.path.join(inputs, f"speaker{copy}", f"{os.path.splitext(name)[0]}.mp4")
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    shutil.copy(os.path.join(args.media, name), target)
                    with open(target, "rb") as f:
                        storage.write_bytes(f"s3://bench/inputs/speaker{copy}/{os.path.basename(target)}", f.read())
            runs: dict[str, list[float]] = {"local": [], "s3": []}
            frames = {}
            for attempt in range(2):
                for where in ("local", "s3"):
                    source = inputs if where == "local" else "s3://bench/inputs/"
                    output = os.path.join(work, f"out{attempt}") if where == "local" else f"s3://bench/out{attempt}"
                    seconds, frames[where] = build(source, output, args.workers)
                    runs[where].append(seconds)
            assert frames["local"] == frames["s3"], frames
            report = {"inputs": 3 * args.repeat, "frames": frames["local"], "workers": args.workers,
                      "local_seconds": [round(s, 1) for s in runs["local"]],
                      "s3_seconds": [round(s, 1) for s in runs["s3"]],
                      "local_fps": round(frames["local"] / min(runs["local"]), 1),
                      "s3_fps": round(frames["s3"] / min(runs["s3"]), 1)}
            report["s3_over_local"] = round(report["s3_fps"] / report["local_fps"], 3)
            print(json.dumps(report, indent=1))
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
