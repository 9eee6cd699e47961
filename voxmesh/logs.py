"""The one logging set-up of the ``voxmesh`` command.

Every module logs through ``logging.getLogger(__name__)``. By default the terminal shows
voxmesh's own INFO lines and up (progress, warnings that need action) and other libraries' errors
only; other programs' native output (MediaPipe's C++ logs, Beam's local worker harness) goes to
the null device. ``-q`` keeps voxmesh's warnings and errors only; ``-v`` shows everything, from
every library, at DEBUG; ``--log-file PATH`` keeps everything in that file (Python records at
DEBUG and the native output of the command and its local workers) whatever the terminal shows.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, TextIO

from voxmesh.pipelines.logs import NATIVE_STDERR_ENV, native_stderr_to
from voxmesh.schemas.errors import raised_user_error
from voxmesh.schemas.storage import local_file_to_write

FILE_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


class ConsoleFilter(logging.Filter):
    """voxmesh's records at ``level`` and up; other libraries' at ERROR and up."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "voxmesh" or record.name.startswith("voxmesh."):
            return record.levelno >= self.level
        if record.levelno < max(self.level, logging.ERROR):
            return False
        if _reports_an_interrupt(record):
            # a local worker's harness reports the Ctrl-C it got, which can reach this process's
            # log service before this process's own signal handler runs
            interrupted.set()
        if _reports_a_user_error(record):
            return False  # a worker's error for the user: the command ends with its one line (cli.main)
        return not interrupted.is_set()  # after Ctrl-C, what it did to the libraries (see interrupted)


def _reports_an_interrupt(record: logging.LogRecord) -> bool:
    """Whether ``record`` reports a KeyboardInterrupt: as its exception, or in the text of a
    worker's log entry that Beam's runner passes on (a traceback that ends in the exception's name)."""
    if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
        return True
    return "KeyboardInterrupt" in _text(record)


def _reports_a_user_error(record: logging.LogRecord) -> bool:
    """Whether ``record`` is a worker's log entry, passed on by Beam's runner, whose traceback holds
    an error for the user (a backend's weights file that is not there; Beam's entries escape their
    newlines): the command ends with that error's one line, and the entry (thousands of
    characters) stays in the log file."""
    return any(raised_user_error(line) for line in re.split(r"\\n|\n", _text(record)))


def _text(record: logging.LogRecord) -> str:
    """The record's message; "" for a malformed logging call, which the handler reports as it would
    without the filter."""
    try:
        return record.getMessage()
    except Exception:  # noqa: BLE001 - whatever the malformed call raises
        return ""


# Set by Ctrl-C (SIGINT) while a command runs. A terminal sends it to the local Beam workers too,
# and their harnesses, gRPC threads and the runner then report it: tens of tracebacks that say
# nothing but "interrupted". From then on the terminal shows voxmesh's own lines only (the log
# file keeps everything) and the command ends with one line (cli.main).
interrupted = threading.Event()


def _on_interrupt(signum: int, frame: FrameType | None) -> None:
    interrupted.set()
    raise KeyboardInterrupt


def _thread_exception(default: Callable[[threading.ExceptHookArgs], Any]) -> Callable[[threading.ExceptHookArgs], Any]:
    """``threading.excepthook`` that logs, instead of printing, a thread's exception once the
    command was interrupted."""
    def hook(args: threading.ExceptHookArgs) -> None:
        if not interrupted.is_set():
            default(args)
        elif args.exc_value is not None:
            logging.getLogger(__name__).debug("thread %s after the interrupt", getattr(args.thread, "name", "?"),
                                              exc_info=args.exc_value)
    return hook


class ConsoleFormatter(logging.Formatter):
    """INFO lines as they are; warnings and errors prefixed with their level."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno == logging.INFO else f"{record.levelname.lower()}: {message}"


@contextlib.contextmanager
def logging_setup(verbose: bool = False, quiet: bool = False, log_file: str | None = None) -> Iterator[None]:
    """Install the handlers for one command and remove them (and undo the redirection) on exit."""
    redirect = log_file or (None if verbose else os.devnull)
    if log_file:
        local_file_to_write(log_file)
    with contextlib.ExitStack() as stack:
        if redirect is not None:
            python_stderr_is_fd2 = _is_descriptor_2(sys.stderr)
            console_stream = stack.enter_context(native_stderr_to(os.path.abspath(redirect)))
            if python_stderr_is_fd2:
                # Python's own writes to stderr (argparse's usage errors, a verb's summary line)
                # are meant for a person: they go where descriptor 2 went, and to the log file
                stack.enter_context(contextlib.redirect_stderr(_Both(console_stream, sys.stderr)))
            stack.enter_context(_environment(NATIVE_STDERR_ENV, "keep"))
        else:
            console_stream = None  # sys.stderr
        console = logging.StreamHandler(console_stream)
        if verbose:
            console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        else:
            console.addFilter(ConsoleFilter(logging.WARNING if quiet else logging.INFO))
            console.setFormatter(ConsoleFormatter("%(message)s"))
        handlers: list[logging.Handler] = [console]
        if log_file:
            file_handler = logging.FileHandler(log_file, encoding="utf-8")
            file_handler.setFormatter(logging.Formatter(FILE_FORMAT))
            handlers.append(file_handler)
        root = logging.getLogger()
        old_level, old_handlers = root.level, root.handlers[:]
        root.handlers = handlers
        root.setLevel(logging.DEBUG if verbose or log_file else logging.INFO)
        logging.captureWarnings(True)
        interrupted.clear()
        # only where Ctrl-C would raise KeyboardInterrupt anyway: not where SIGINT is ignored (a
        # background job of a script) or handled by the program that runs this one
        if not verbose and threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            stack.callback(signal.signal, signal.SIGINT, signal.signal(signal.SIGINT, _on_interrupt))
            stack.callback(setattr, threading, "excepthook", threading.excepthook)
            threading.excepthook = _thread_exception(threading.excepthook)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("default")
                yield
        finally:
            logging.captureWarnings(False)
            for handler in handlers:
                handler.flush()
                if handler is not console:
                    handler.close()
            root.handlers, root.level = old_handlers, old_level


class _Both(io.TextIOBase):
    """A text stream that writes to each of ``streams`` (the terminal, and descriptor 2, which
    goes to the log file or the null device)."""

    def __init__(self, *streams: TextIO):
        super().__init__()
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def _is_descriptor_2(stream: TextIO) -> bool:
    """Whether ``stream`` writes to descriptor 2 (not when it was replaced, e.g. by an embedding
    program or a test's capture)."""
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old
