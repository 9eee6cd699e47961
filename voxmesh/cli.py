"""The ``voxmesh`` command line: one verb per module of ``voxmesh.commands``.

Errors a user can act on (:class:`~voxmesh.schemas.errors.UserError`) are printed as one line,
``voxmesh VERB: what is wrong and what to do``, with exit code 2; anything else is a bug and keeps
its traceback. ``-v``/``-q``/``--log-file`` (before the verb) choose what the terminal and the log
file show (:mod:`voxmesh.logs`).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import os
import select
import sys
from typing import NoReturn

from voxmesh.logs import logging_setup
from voxmesh.schemas.errors import UserError

log = logging.getLogger(__name__)

# verb -> module of voxmesh.commands, in the order `voxmesh --help` lists them
COMMANDS = {
    "build": "build", "validate": "validate", "stats": "stats", "preview": "preview",
    "train": "train", "generate": "generate", "eval": "eval", "sync": "sync", "style": "style",
    "backends": "backends", "convert-flame": "convert_flame", "demo": "demo",
}


# what to do after Ctrl-C, for the verbs that can continue where they stopped
AFTER_INTERRUPT = {
    "build": "; what was committed stays in --output: run the same command with --resume to continue",
    "train": "; run the same command with --resume to continue from the run folder's last.pt (without it if "
             "none was written yet: one every train.checkpoint_every steps)",
}


class OneLineParser(argparse.ArgumentParser):
    """A parser whose usage errors are one line like every other mistake (argparse prints its whole
    usage block first): ``voxmesh VERB: what is wrong; see `voxmesh VERB --help```, exit 2."""

    def error(self, message: str) -> NoReturn:
        usage_error(self.prog, message)


def usage_error(prog: str, message: str) -> NoReturn:
    """Exit 2 with ``PROG: MESSAGE; see `PROG --help```, one line on standard error."""
    sys.stderr.write(f"{prog}: {message}; see `{prog} --help`\n")
    sys.exit(2)


def logging_parser(add_help: bool = False) -> argparse.ArgumentParser:
    """The options that choose what is logged where; parsed first, before the verbs are imported."""
    parser = OneLineParser(prog="voxmesh", add_help=add_help)
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-v", "--verbose", action="store_true",
                          help="show every library's log lines, MediaPipe's and Beam's workers' included")
    loudness.add_argument("-q", "--quiet", action="store_true", help="show warnings and errors only")
    parser.add_argument("--log-file", metavar="PATH", help="append everything that is logged to PATH")
    return parser


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``verb`` (one of :data:`COMMANDS`) only that verb's module is
    imported and offered. A verb's module imports what the verb runs, and some of that is slow to
    import: ``train`` imports torch (1.4 s), ``demo`` scipy.signal (1.1 s), ``build`` Beam. With
    no verb or an unknown one (``voxmesh --help``, a typo) every verb is imported and listed."""
    parser = OneLineParser(
        prog="voxmesh", parents=[logging_parser()],
        description="Build speech-driven 3D facial animation datasets from talking-face videos, "
                    "validate and inspect them, train and evaluate speech-to-motion models.")
    verbs = parser.add_subparsers(dest="command", required=True, metavar="VERB")
    for name, module_name in COMMANDS.items():
        if verb in COMMANDS and name != verb:
            continue
        module = importlib.import_module(f"voxmesh.commands.{module_name}")
        sub = verbs.add_parser(name, help=module.HELP, description=module.DESCRIPTION)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    at = _verb_index(argv)
    # only the options before the verb: the same ones after it are refused, and must not act first
    loudness, _ = logging_parser().parse_known_args(argv[:at])
    verb = argv[at] if at < len(argv) else None
    with logging_setup(loudness.verbose, loudness.quiet, loudness.log_file):
        parser = build_parser(verb)
        args, beam_args = parser.parse_known_args(argv)
        if beam_args and args.command != "build":
            usage_error(f"voxmesh {args.command}", f"unrecognised arguments: {' '.join(beam_args)}")
        args.beam_args = beam_args
        who = _who(args.command)
        try:
            return args.run(args)
        except UserError as error:
            log.debug("%s: %s", who, error)  # for --log-file; printed below
            message, code = f"{who}: {error}", 2
        except KeyboardInterrupt:
            log.debug("%s: interrupted", who, exc_info=True)
            message, code = f"{who}: interrupted{AFTER_INTERRUPT.get(args.command, '')}", 130
    sys.stderr.write(message + "\n")  # one write: the lines of several processes never interleave
    return code


def _verb_index(argv: list[str]) -> int:
    """Where the verb is in ``argv``: its first word that is neither an option nor the value of
    ``--log-file`` (``len(argv)`` without one)."""
    index = 0
    while index < len(argv) and argv[index].startswith("-"):
        index += 2 if argv[index] == "--log-file" else 1
    return min(index, len(argv))


def _who(command: str) -> str:
    """``voxmesh VERB``, with the process's rank when ``torchrun`` started several, each of which
    reports its own error."""
    world = os.environ.get("WORLD_SIZE", "1")
    if world.isdigit() and int(world) > 1:
        return f"voxmesh {command} (rank {os.environ.get('RANK', '?')} of {world})"
    return f"voxmesh {command}"


def entry_point() -> NoReturn:
    """The ``voxmesh`` command: :func:`main`, whose code is the exit status.

    Before the interpreter exits, everything loaded is frozen out of the garbage collector's way
    (``gc.freeze``). Otherwise the collections that run while the interpreter tears down a build's
    modules (Beam, gRPC, pyarrow, pandas, ...) cost 0.38-0.59 s after the work is done; frozen,
    the exit takes 0.05-0.06 s (``bench/bench_command.py``). The build workers do the same
    (``pipelines/build/pipeline.py``).

    When the reader of its output goes away (``voxmesh stats out | head -2``), the command stops
    quietly with status 1 instead of a ``BrokenPipeError`` traceback.
    """
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise  # another pipe or socket broke: a failure to report, not a reader that went away
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        code = 1
    gc.freeze()
    sys.exit(code)


def _stdout_reader_gone() -> bool:
    """Whether standard output is a pipe whose reading end is closed (the kernel reports an
    error condition on the writing end then)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


if __name__ == "__main__":
    entry_point()
