"""Benchmark of what the ``voxmesh`` command itself costs around a build (not a test; the figures
go in the README), in fresh processes, the variants in turn, ``--rounds`` times, medians in s:

  - start: importing the command line with one verb alone, as ``voxmesh VERB`` does, for each
    verb, and with every verb, as ``voxmesh --help`` does (``train`` imports torch, ``demo``
    scipy.signal, ``build`` Beam);
  - exit: after a local build of the shared media, the time from ``main`` returning to the end of
    the process, with what is loaded frozen out of the garbage collector's way, as
    ``cli.entry_point`` does, and without.

Usage: python bench/bench_command.py [--media DIR] [--rounds N] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from voxmesh.cli import COMMANDS

CLIPS = ("hdtf_aoc_512_25fps.mp4", "retalking2_844_25fps.mp4", "retalking4_700_30fps.mp4")

START = ("import time; start = time.perf_counter(); from voxmesh.cli import build_parser; "
         "build_parser({verb!r}); print(time.perf_counter() - start)")
EXIT = ("import gc, sys, time; from voxmesh.cli import main; "
        "code = main(['-q', 'build', '--input', {input!r}, '--output', {output!r}, '--workers', {workers!r}]); "
        "gc.freeze() if {freeze} else None; print(time.time(), flush=True); sys.exit(code)")


def python(code: str) -> tuple[str, float]:
    """Run ``code`` in a fresh interpreter: (its last line of output, the time it ended)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.split()[-1], time.time()


def start_seconds(verb: str | None) -> float:
    return float(python(START.format(verb=verb))[0])


def exit_seconds(freeze: bool, inputs: str, output: str, workers: int) -> float:
    returned, ended = python(EXIT.format(input=inputs, output=output, workers=str(workers), freeze=freeze))
    return ended - float(returned)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--media", default=os.environ.get("VOXMESH_TEST_MEDIA", "../shared/media"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    sources = [os.path.abspath(os.path.join(args.media, clip)) for clip in CLIPS]
    if not all(os.path.isfile(s) for s in sources):
        sys.exit(f"missing media in {args.media}; pass --media or set VOXMESH_TEST_MEDIA")
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = os.path.join(tmp, "inputs")
        os.makedirs(inputs)
        for source in sources:
            os.symlink(source, os.path.join(inputs, os.path.basename(source)))
        for index in range(args.rounds):
            for verb in COMMANDS:
                rows.setdefault(f"start: the command line for `{verb}` alone", []).append(start_seconds(verb))
            rows.setdefault("start: the command line with every verb", []).append(start_seconds(None))
            for freeze in (True, False):
                output = os.path.join(tmp, f"out-{index}-{freeze}")
                what = f"exit after a build, {'frozen' if freeze else 'not frozen'}"
                rows.setdefault(what, []).append(exit_seconds(freeze, inputs, output, args.workers))
    print("| what | each round, s | median, s |")
    print("| --- | --- | --- |")
    for what, seconds in rows.items():
        print(f"| {what} | {', '.join(f'{s:.3f}' for s in seconds)} | {statistics.median(seconds):.3f} |")


if __name__ == "__main__":
    main()
