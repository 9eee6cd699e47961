"""Keeping other programs' native logs off a user's terminal.

MediaPipe (absl, TensorFlow Lite) writes its warnings from C++ straight to file descriptor 2, and
no environment variable of mediapipe 0.10.21 turns them off (``GLOG_minloglevel`` and
``TF_CPP_MIN_LOG_LEVEL`` do not). Beam's local workers are subprocesses that inherit descriptor 2
and print their harness's INFO lines there. So a quiet process points descriptor 2 elsewhere (a
log file, or the null device) while Python keeps writing to a copy of the original.

The launcher does it for the whole command (its local workers inherit the redirection and are
told so through ``VOXMESH_NATIVE_STDERR=keep``); a worker that was not started that way (a
cluster's) does it itself while a DoFn holds MediaPipe models (:func:`hold_quiet_native_logs`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import TextIO

NATIVE_STDERR_ENV = "VOXMESH_NATIVE_STDERR"  # "keep": leave descriptor 2 as it is

_lock = threading.Lock()
_holders = 0
_saved_fd: int | None = None


def _redirect_fd2(target: str) -> int:
    """Point descriptor 2 at ``target`` (opened for appending); return a copy of the original."""
    sys.stderr.flush()
    saved = os.dup(2)
    sink = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(sink, 2)
    os.close(sink)
    return saved


def _restore_fd2(saved: int) -> None:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)


@contextlib.contextmanager
def native_stderr_to(target: str) -> Iterator[TextIO]:
    """Point descriptor 2 at ``target`` (opened for appending) for the duration; yield a text
    stream on the original descriptor 2 for what a person should still see. Restores both on exit.
    """
    saved = _redirect_fd2(target)
    console = open(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="backslashreplace")
    try:
        yield console
    finally:
        console.flush()
        console.close()
        _restore_fd2(saved)


def hold_quiet_native_logs() -> bool:
    """Silence descriptor 2 of this worker process until :func:`release_quiet_native_logs` (held
    by reference count, so concurrent DoFn instances share one redirection). Does nothing when
    ``VOXMESH_NATIVE_STDERR=keep`` (the launcher already chose where it goes). Returns whether it
    holds the redirection (pass that to the release)."""
    global _holders, _saved_fd
    if os.environ.get(NATIVE_STDERR_ENV) == "keep":
        return False
    with _lock:
        if _holders == 0:
            _saved_fd = _redirect_fd2(os.devnull)
        _holders += 1
    return True


def release_quiet_native_logs(held: bool) -> None:
    global _holders, _saved_fd
    if not held:
        return
    with _lock:
        _holders -= 1
        if _holders == 0 and _saved_fd is not None:
            _restore_fd2(_saved_fd)
            _saved_fd = None
