"""A live progress line, read from the parts committed so far in the output (a local folder or
an object store), so it works with any runner."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from voxmesh.schemas import FPS, TarStats, storage

from voxmesh.pipelines.build.packing import PARTS_DIR


class ProgressReporter:
    """While active, print every ``interval`` seconds (2 on a terminal, 30 in a log): parts and
    inputs done of the total, clips, failures, and seconds of clips produced per second."""

    def __init__(self, output: str, tasks: list, enabled: bool = True, interval: float | None = None,
                 stream: TextIO | None = None):
        self.directory = storage.join(output, PARTS_DIR)
        self.names = {t.name for t in tasks}
        self.total_inputs = sum(len(t.items) for t in tasks)
        self.enabled = enabled
        self.stream = stream or sys.stderr  # the current one, not the one at import time
        self.interval = interval if interval is not None else (2.0 if self.stream.isatty() else 30.0)
        self._stop = threading.Event()
        self._seen: dict[str, TarStats] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = 0.0

    def __enter__(self) -> "ProgressReporter":
        if self.enabled:
            self._start = time.monotonic()
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._stop.set()
            self._thread.join()
            self._print(final=True)

    def line(self) -> str:
        self._refresh()
        inputs = sum(len(s.inputs) for s in self._seen.values())
        clips = sum(len(s.samples) for s in self._seen.values())
        failures = sum(len(s.failures) for s in self._seen.values())
        seconds = sum(r["n_frames"] for s in self._seen.values() for r in s.samples) / FPS
        elapsed = max(time.monotonic() - self._start, 1e-9)
        return (f"[voxmesh] parts {len(self._seen)}/{len(self.names)} · inputs {inputs}/{self.total_inputs} · "
                f"clips {clips} · failures {failures} · {seconds / elapsed:.1f} s of clips per s")

    def _refresh(self) -> None:
        for name in storage.list_names(self.directory):
            shard = name[:-len(".stats.json")]
            if name.endswith(".stats.json") and shard in self.names and shard not in self._seen:
                self._seen[shard] = TarStats.read(storage.join(self.directory, name))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._print(final=False)

    def _print(self, final: bool) -> None:
        terminal = self.stream.isatty()
        end = "\n" if final or not terminal else "\r"
        self.stream.write(("\r" if terminal else "") + self.line() + end)
        self.stream.flush()
