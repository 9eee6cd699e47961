"""Progress lines, read from the parts committed so far in the output (a local folder or an
object store, so it works with any runner), logged at INFO."""

from __future__ import annotations

import logging
import threading
import time

from voxmesh.pipelines.build.packing import PARTS_DIR
from voxmesh.schemas import FPS, TarStats, storage
from voxmesh.schemas.shards import META_DIR

log = logging.getLogger(__name__)


class ProgressReporter:
    """While active, log every ``interval`` seconds, and once at the end: parts and inputs done of
    the total, clips, failures, and seconds of clips produced per second. Nothing when disabled
    or when INFO is not logged (``voxmesh -q``)."""

    def __init__(self, output: str, tasks: list, enabled: bool = True, interval: float = 15.0):
        self.directory = storage.join(output, META_DIR, PARTS_DIR)
        self.names = {t.name for t in tasks}
        self.total_inputs = sum(len(t.items) for t in tasks)
        self.enabled = enabled and log.isEnabledFor(logging.INFO)
        self.interval = interval
        self._stop = threading.Event()
        self._seen: dict[str, TarStats] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = 0.0

    def __enter__(self) -> ProgressReporter:
        if self.enabled:
            self._start = time.monotonic()
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._stop.set()
            self._thread.join()
            log.info(self.line())

    def line(self) -> str:
        self._refresh()
        inputs = sum(len(s.inputs) for s in self._seen.values())
        clips = sum(len(s.samples) for s in self._seen.values())
        failures = sum(len(s.failures) for s in self._seen.values())
        seconds = sum(r["n_frames"] for s in self._seen.values() for r in s.samples) / FPS
        elapsed = max(time.monotonic() - self._start, 1e-9)
        return (f"parts {len(self._seen)}/{len(self.names)} · inputs {inputs}/{self.total_inputs} · "
                f"clips {clips} · failures {failures} · {seconds / elapsed:.1f} s of clips per s")

    def _refresh(self) -> None:
        for name in storage.list_names(self.directory):
            shard = name[:-len(".stats.json")]
            if name.endswith(".stats.json") and shard in self.names and shard not in self._seen:
                self._seen[shard] = TarStats.read(storage.join(self.directory, name))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            log.info(self.line())
