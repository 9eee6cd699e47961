"""Every file voxmesh reads or writes, on a local disk or on any file system Beam registers
(``gs://``, ``s3://``, ...): open, list, delete, and publishing a finished file.

Local paths use the operating system directly (and ``os.replace`` to publish, so a file appears
whole or not at all). Other URIs go through ``apache_beam.io.filesystems.FileSystems`` (``s3://``
reads, writes, checks and deletes through Beam's ``S3IO`` with one client per thread, see
:func:`_s3`); object
stores have no rename, but an object appears only once its upload completes, so publishing is a
single upload of a finished local file, and a dataset's commit markers (a shard's stats JSON,
written after its tar) say which objects are complete.

Beam's S3 file system needs pipeline options: :func:`configure` hands them over (the launcher
and each worker call it with the build's arguments). Without options, the clients use the
standard environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_DEFAULT_REGION``; ``GOOGLE_APPLICATION_CREDENTIALS`` for GCS).

Datasets on such file systems are read by webdataset through :func:`register_webdataset_schemes`,
which routes those URL schemes to :func:`open_read` (the same clients and credentials), instead of
webdataset's own command-line pipes.
"""

from __future__ import annotations

import contextlib
import functools
import os
import posixpath
import shutil
import tempfile
import threading
from collections.abc import Iterator
from typing import IO

from .errors import MissingFileError, UserError

_configured = False
_clients = threading.local()  # one S3 client per thread and options (see _s3)
_answered: dict[str, object] = {}  # "scheme://bucket" -> the file-system options it answered with


class StorageError(UserError, OSError):
    """A URI that cannot be listed, read or written; the message says which option to set."""


def is_remote(uri: str) -> bool:
    return "://" in uri


def scheme(uri: str) -> str:
    return uri.split("://", 1)[0] if is_remote(uri) else ""


def join(base: str, *names: str) -> str:
    if is_remote(base):
        return "/".join([base.rstrip("/"), *names])
    return os.path.join(base, *names)


def basename(uri: str) -> str:
    return posixpath.basename(uri.rstrip("/")) if is_remote(uri) else os.path.basename(uri)


def configure(pipeline_args: list[str] | None) -> None:
    """Give Beam's file systems these pipeline options (``--s3_endpoint_url``, ...); ``None`` or
    ``[]`` keep the standard environment."""
    global _configured
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions
    FileSystems.set_options(PipelineOptions(list(pipeline_args or [])))
    _configured = True


def _s3():
    """Beam's S3 I/O with a client kept for this thread and these options. Beam's S3 file system
    creates a boto3 session and client for every call (0.6-0.75 s each, measured on the
    development machine), which a build makes dozens of times; the objects are the same."""
    options = _filesystems()._pipeline_options
    cached = getattr(_clients, "s3", None)
    if cached is None or cached[0] is not options:  # new options (configure): a new client
        from apache_beam.io.aws.s3io import S3IO
        _clients.s3 = cached = (options, S3IO(options=options))
    return cached[1]


def _filesystems():
    from apache_beam.io.filesystems import FileSystems
    if not _configured and FileSystems._pipeline_options is None:
        configure(None)
    return FileSystems


def hint(uri: str) -> str:
    """What to set when ``uri`` cannot be reached."""
    if scheme(uri) == "s3":
        return ("check the bucket, and AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
                "AWS_DEFAULT_REGION (voxmesh build also takes --s3_endpoint_url, --s3_access_key_id, "
                "--s3_secret_access_key, --s3_region_name)")
    if scheme(uri) == "gs":
        return "check the bucket and GOOGLE_APPLICATION_CREDENTIALS (or gcloud auth application-default login)"
    return "check the path and its permissions"


def install_hint(uri: str) -> str:
    """What to install so that Beam reads ``uri``'s scheme."""
    extra = {"s3": "aws", "gs": "gcp"}.get(scheme(uri))
    return f"pip install 'voxmesh[{extra}]'" if extra else "install the Beam file system that reads it"


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:300] + "..."


def open_read(uri: str) -> IO[bytes]:
    """A binary file object reading ``uri``; MissingFileError when it is not there."""
    if not is_remote(uri):
        try:
            return open(uri, "rb")
        except FileNotFoundError:
            raise MissingFileError(f"{uri}: no such file") from None
    from apache_beam.io.filesystem import CompressionTypes
    _check_bucket(uri)
    try:
        if scheme(uri) == "s3":
            return _s3().open(uri, "rb")
        return _filesystems().open(uri, compression_type=CompressionTypes.UNCOMPRESSED)
    except Exception as error:  # noqa: BLE001 - every file system raises its own errors
        if not exists(uri):
            raise MissingFileError(f"{uri}: no such object") from error
        raise StorageError(f"{uri}: cannot be read ({_short(error)}); {hint(uri)}") from error


def read_bytes(uri: str) -> bytes:
    with open_read(uri) as f:
        return f.read()


def exists(uri: str) -> bool:
    if not is_remote(uri):
        return os.path.exists(uri)
    _check_bucket(uri)
    try:
        return bool(_s3().exists(uri) if scheme(uri) == "s3" else _filesystems().exists(uri))
    except Exception as error:  # noqa: BLE001
        raise StorageError(f"{uri}: cannot be checked ({_short(error)}); {hint(uri)}") from error


def list_names(folder: str) -> list[str]:
    """Names of the files directly in ``folder``, sorted (empty when there is no such folder)."""
    if not is_remote(folder):
        if not os.path.isdir(folder):
            return []
        return sorted(n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n)))
    prefix = folder.rstrip("/") + "/"
    return sorted(path[len(prefix):] for path in match(prefix + "*") if "/" not in path[len(prefix):])


def match(pattern: str) -> list[str]:
    """The URIs matching a file-system glob (``**`` crosses folders), sorted."""
    _check_bucket(pattern)
    try:
        result = _filesystems().match([pattern])[0]
    except Exception as error:  # noqa: BLE001
        raise StorageError(f"{pattern}: cannot be listed ({_short(error)}); {hint(pattern)}") from error
    return sorted(m.path for m in result.metadata_list)


def is_empty_folder(folder: str) -> bool:
    """True when nothing is stored under ``folder`` (also when it does not exist)."""
    if not is_remote(folder):
        return not os.path.isdir(folder) or not os.listdir(folder)
    return not match(folder.rstrip("/") + "/**")


def delete(uris: list[str]) -> None:
    """Delete these files (those already gone are fine)."""
    local = [u for u in uris if not is_remote(u)]
    for path in local:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
    remote = [u for u in uris if is_remote(u) and exists(u)]
    s3 = [u for u in remote if scheme(u) == "s3"]
    if s3:
        _s3().delete_paths(s3)
    if len(s3) < len(remote):
        _filesystems().delete([u for u in remote if scheme(u) != "s3"])


def remove_tree(folder: str) -> None:
    """Delete ``folder`` and everything under it."""
    if not is_remote(folder):
        shutil.rmtree(folder, ignore_errors=True)
    else:
        delete(match(folder.rstrip("/") + "/**"))


@functools.cache
def _umask() -> int:
    """The process's umask (published files get the permissions that a plain open() would give
    them), from /proc where the kernel shows it; elsewhere by setting it and setting it back (a
    file created by another thread in between would get 0o022)."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        umask = os.umask(0o022)
        os.umask(umask)
        return umask


def local_file_to_write(path: str) -> str:
    """``path``, a local file about to be written, once the folder it goes in exists."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return path


def make_folder(folder: str) -> None:
    """Create a local folder (object stores have none to create)."""
    if not is_remote(folder):
        os.makedirs(folder, exist_ok=True)


def publish(local_path: str, uri: str) -> None:
    """Move the finished local file ``local_path`` to ``uri`` so that it appears whole or not at
    all: a rename on a local disk, one upload elsewhere (the local file is removed)."""
    if not is_remote(uri):
        os.makedirs(os.path.dirname(uri) or ".", exist_ok=True)
        os.chmod(local_path, 0o666 & ~_umask())  # a spool is private (mkstemp: 0600); the file is not
        os.replace(local_path, uri)
        return
    from apache_beam.io.filesystem import CompressionTypes
    _check_bucket(uri)
    try:
        with open(local_path, "rb") as source, (
                _s3().open(uri, "wb") if scheme(uri) == "s3" else _filesystems().create(
                    uri, mime_type="application/octet-stream", compression_type=CompressionTypes.UNCOMPRESSED)) as target:
            shutil.copyfileobj(source, target, 8 * 2 ** 20)
    except Exception as error:  # noqa: BLE001
        raise StorageError(f"{uri}: cannot be written ({_short(error)}); {hint(uri)}") from error
    os.remove(local_path)


def local_spool(uri: str) -> str:
    """A new temporary local file to write ``uri``'s content into before :func:`publish`: next to
    it on a local disk (so that the rename stays on one file system), else in the temp folder."""
    if is_remote(uri):
        handle, path = tempfile.mkstemp(prefix="voxmesh-", suffix=os.path.splitext(uri)[1])
    else:
        folder = os.path.dirname(uri) or "."
        os.makedirs(folder, exist_ok=True)
        handle, path = tempfile.mkstemp(prefix=f"{os.path.basename(uri)}.tmp-", dir=folder)
    os.close(handle)
    return path


def write_bytes(uri: str, data: bytes) -> None:
    """Write ``data`` to ``uri`` whole (see :func:`publish`)."""
    spool = local_spool(uri)
    try:
        with open(spool, "wb") as f:
            f.write(data)
        publish(spool, uri)
    finally:
        if os.path.exists(spool):
            os.remove(spool)


def download(uri: str, target: IO[bytes]) -> None:
    """Copy ``uri``'s bytes into the open file ``target`` (flushed)."""
    with open_read(uri) as source:
        shutil.copyfileobj(source, target, 8 * 2 ** 20)
    target.flush()


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[str]:
    """A local path holding ``uri``'s bytes: the path itself, or a temporary copy removed
    afterwards. MissingFileError / StorageError when it cannot be read."""
    if not is_remote(uri):
        yield uri
        return
    with tempfile.NamedTemporaryFile(suffix=os.path.splitext(uri)[1]) as local:
        download(uri, local)
        yield local.name


def _gopen(url: str, mode: str = "rb", bufsize: int = 8192, **_) -> IO[bytes]:
    if mode != "rb":
        raise ValueError(f"{url}: only reading is supported")
    return open_read(url)


def register_webdataset_schemes(schemes: tuple[str, ...] = ("s3", "gs")) -> None:
    """Let webdataset (and the loaders built on it) open these URL schemes through :func:`open_read`."""
    from webdataset.gopen import gopen_schemes
    for name in schemes:
        gopen_schemes[name] = _gopen


def check_reachable(uri: str, what: str = "") -> None:
    """Fail before any work when the file system of ``uri`` cannot be listed (bucket missing,
    no credentials, endpoint down): one line naming the URI (after ``what``, e.g. ``--input``) and
    what to set."""
    if not is_remote(uri):
        return
    named = f"{what} {uri}" if what else uri
    try:
        _filesystems().get_filesystem(uri)
    except ValueError as error:
        raise StorageError(f"{named}: no installed file system reads {scheme(uri)}:// ({install_hint(uri)})") from error
    bucket = _bucket(uri)
    options = _filesystems()._pipeline_options
    try:
        if scheme(uri) == "s3":  # Beam's S3 listing reports a missing bucket as an empty one
            from apache_beam.io.aws.clients.s3.boto3_client import Client
            Client(options).client.head_bucket(Bucket=bucket.split("://", 1)[1])
        else:
            _filesystems().match([f"{bucket}/*"], limits=[1])
    except Exception as error:  # noqa: BLE001
        raise StorageError(f"{named}: cannot reach the bucket ({_short(error)}); {hint(uri)}") from error
    _answered[bucket] = options


def _bucket(uri: str) -> str:
    """``scheme://bucket`` of an object-store URI."""
    return f"{scheme(uri)}://{uri.split('://', 1)[1].split('/', 1)[0]}"


def _check_bucket(uri: str) -> None:
    """:func:`check_reachable` once per bucket and file-system options in this process, before the
    first call that goes through Beam's file systems: those retry an endpoint that does not answer
    with exponential backoff for minutes (``validate s3://...`` with a wrong endpoint sat for over
    eight), where the check fails in about a second."""
    if is_remote(uri) and _answered.get(_bucket(uri)) is not _filesystems()._pipeline_options:
        check_reachable(uri)
