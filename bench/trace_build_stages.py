"""Where a local ``voxmesh build`` spends its time, stage by stage (not a test; the figures go in
the README): the command run in this process through ``voxmesh.cli.main``, with timestamps
around each bundle of Beam's local runner and around the stopping of each worker process, in
seconds from the start (before the command line is imported). A bundle's time includes whatever
its workers had to do first: the first one's includes their start, the parts' stage each
worker's set-up. The timestamps wrap two private methods of Beam's local runner
(``FnApiRunner._execute_bundle``, ``SubprocessSdkWorkerHandler.stop_worker``, as in the Beam
that setup.py pins).

Usage: python bench/trace_build_stages.py [--input DIR] [--workers N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile
import time

START = time.perf_counter()


def stage_label(name: str) -> str:
    """A fused stage's name as the pipeline's transforms in it, in order: ``stage PlanParts +
    SpreadParts``."""
    found = re.findall(r"(?:ref_AppliedPTransform_|\((?!ref_))([A-Za-z]+)[-/_]", name)
    return "stage " + " + ".join(dict.fromkeys(found))


@contextlib.contextmanager
def traced(events: list[tuple[str, float, float]]):
    """While open, append (what, start, end) to ``events`` for each bundle and each worker
    stopped; Beam's methods are restored on leaving."""
    from apache_beam.runners.portability.fn_api_runner import fn_runner, worker_handlers
    originals = []

    def around(cls, method: str, what) -> None:
        original = getattr(cls, method)
        originals.append((cls, method, original))

        def wrapper(self, *args, **kwargs):
            began = time.perf_counter() - START
            result = original(self, *args, **kwargs)
            events.append((what(*args), began, time.perf_counter() - START))
            return result
        setattr(cls, method, wrapper)

    around(fn_runner.FnApiRunner, "_execute_bundle", lambda context, bundle, *_: stage_label(bundle.stage.name))
    around(worker_handlers.SubprocessSdkWorkerHandler, "stop_worker", lambda: "stopping a worker")
    try:
        yield
    finally:
        for cls, method, original in originals:
            setattr(cls, method, original)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", default=os.environ.get("VOXMESH_TEST_MEDIA", "../shared/media"))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    events: list[tuple[str, float, float]] = []
    from voxmesh.cli import main as voxmesh
    events.append(("importing the command line (voxmesh.cli)", 0.0, time.perf_counter() - START))
    began = time.perf_counter() - START
    with traced(events), tempfile.TemporaryDirectory() as tmp:
        events.append(("importing Beam's local runner, to trace it (the build's own imports would)", began,
                       time.perf_counter() - START))
        began = time.perf_counter() - START
        code = voxmesh(["-q", "build", "--input", args.input, "--output", os.path.join(tmp, "out"),
                        "--workers", str(args.workers)])
        events.append(("voxmesh build: the rest of its imports, the build, the dataset's files", began,
                       time.perf_counter() - START))
    if code:
        sys.exit(f"the build failed with exit code {code}")
    print("| step | from, s | to, s | seconds |")
    print("| --- | --- | --- | --- |")
    for what, began, ended in sorted(events, key=lambda e: (e[1], -e[2])):
        print(f"| {what} | {began:.2f} | {ended:.2f} | {ended - began:.2f} |")


if __name__ == "__main__":
    main()
