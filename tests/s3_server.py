"""A real S3-compatible server for tests: moto's standalone server on 127.0.0.1, on a free port,
with the standard AWS variables pointing at it for the test session."""

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid

import pytest

AWS_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port}")


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """Start ``moto_server``; set ``AWS_ENDPOINT_URL`` and test credentials for the session (the
    previous values come back afterwards). Yields the endpoint URL."""
    server = shutil.which("moto_server", path=os.path.dirname(sys.executable))
    if server is None:
        pytest.skip("moto_server not installed (pip install 'moto[server]'): no S3-compatible server to test against")
    port = free_port()
    log = open(tmp_path_factory.mktemp("s3") / "moto.log", "ab")
    process = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    saved = {name: os.environ.get(name) for name in AWS_VARIABLES}
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="voxmesh-test",
                      AWS_SECRET_ACCESS_KEY="voxmesh-test", AWS_DEFAULT_REGION="us-east-1")
    try:
        wait_for_port(port)
        yield endpoint
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture
def bucket(s3_endpoint) -> str:
    """A new empty bucket on the test server; yields ``s3://NAME``."""
    import boto3
    name = f"voxmesh-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    yield f"s3://{name}"


def upload_folder(folder: str, uri: str) -> None:
    """Copy every file under ``folder`` to ``uri`` (keeping relative paths)."""
    from voxmesh.schemas import storage
    for root, _, names in os.walk(folder):
        for name in names:
            relative = os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
            with open(os.path.join(root, name), "rb") as f:
                storage.write_bytes(f"{uri}/{relative}", f.read())


def stored_bytes(uri: str) -> dict[str, bytes]:
    """Every object under ``uri`` by its relative name."""
    from voxmesh.schemas import storage
    prefix = uri.rstrip("/") + "/"
    return {path[len(prefix):]: storage.read_bytes(path) for path in storage.match(prefix + "**")}
