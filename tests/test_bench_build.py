"""bench/bench_build.py --short runs every measurement end to end and reports every figure, each
ratio taken within its round (the benchmark itself is run by hand; no timing is asserted here)."""

import json
import os
import statistics
import subprocess
import sys

BENCH = os.path.join(os.path.dirname(__file__), "..", "bench", "bench_build.py")


def test_the_build_benchmark_runs_short_and_reports_every_figure(media_dir):
    env = dict(os.environ, VOXMESH_TEST_MEDIA=media_dir)
    done = subprocess.run([sys.executable, BENCH, "--short", "--workers", "2", "--rounds", "2"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout[done.stdout.index("{"):])
    for name in ("224x224", "shared_media_native"):
        figures = report[name]
        assert figures["inputs"] == 2 and figures["frames"] > 100 and figures["build_clips"] >= 2, figures
        for key in ("decode_fps_one_process", "mediapipe_alone_fps_one_process", "naive_fps", "build_fps",
                    "mediapipe_alone_fps_all_cores_at_once", "build_vs_mediapipe_alone_all_cores_at_once",
                    "build_vs_naive", "build_vs_mediapipe_alone_x_cores", "naive_core_hours_voxceleb2_dev",
                    "build_core_hours_voxceleb2_dev"):
            assert figures[key] > 0, (name, key)
        rounds = figures["rounds"]
        assert len(rounds) == 2
        for one in rounds:
            assert one["build_vs_naive"] == round(one["build_fps"] / one["naive_fps"], 3)
        assert figures["build_vs_naive"] == statistics.median(r["build_vs_naive"] for r in rounds)
