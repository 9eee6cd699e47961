"""Benchmark of the offset estimate's speech band-pass (not a test; the figures go in the README):
voxmesh's overlap-save filtering (``metrics.sync.speech_band``) against scipy's ``sosfiltfilt``
with the same sections, on noise of 2 to 20 s at 16 kHz, the two run in turn (``--repeats``
times each per length, medians in ms), and the largest difference between their outputs away
from the first and last 40 ms, relative to the largest output sample.

Usage: python bench/bench_band_pass.py [--repeats N]
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import signal
from timing import wall_seconds

from voxmesh.metrics.sync import SPEECH_BAND, speech_band

SECONDS = (2, 5, 8, 12, 20)
EDGE = 640  # 40 ms at 16 kHz, where the two start differently (from rest, from a steady state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| clip | overlap-save, ms | sosfiltfilt, ms | largest difference (relative) |")
    print("| --- | --- | --- | --- |")
    for seconds in SECONDS:
        x = rng.standard_normal(seconds * 16000)
        ours, scipys = speech_band(x), signal.sosfiltfilt(SPEECH_BAND, x)
        difference = np.abs(ours - scipys)[EDGE:-EDGE].max() / np.abs(scipys).max()
        times: dict[str, list[float]] = {"ours": [], "scipy": []}
        for _ in range(args.repeats):
            times["ours"].append(1e3 * wall_seconds(speech_band, x))
            times["scipy"].append(1e3 * wall_seconds(signal.sosfiltfilt, SPEECH_BAND, x))
        print(f"| {seconds} s | {np.median(times['ours']):.2f} | {np.median(times['scipy']):.2f} | {difference:.1e} |")


if __name__ == "__main__":
    main()
