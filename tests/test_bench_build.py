"""bench/bench_build.py --short runs every measurement end to end and reports every figure, each
ratio taken within its round, and each fixed cost and rate per frame solved from its two runs
(the benchmark itself is run by hand; no timing is asserted here)."""

import json
import os
import statistics
import subprocess
import sys

BENCH = os.path.join(os.path.dirname(__file__), "..", "bench", "bench_build.py")
sys.path.insert(0, os.path.dirname(BENCH))
from bench_build import fixed_and_rate  # noqa: E402


def test_the_build_benchmark_runs_short_and_reports_every_figure(media_dir):
    env = dict(os.environ, VOXMESH_TEST_MEDIA=media_dir)
    done = subprocess.run([sys.executable, BENCH, "--short", "--workers", "2", "--rounds", "2"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout[done.stdout.index("{"):])
    for name in ("224x224", "shared_media_native"):
        figures = report[name]
        assert figures["inputs"] == 4 and figures["frames"] > 200 and figures["build_clips"] >= 4, figures
        assert figures["first_inputs"] == 2 and figures["first_frames"] * 2 == figures["frames"], figures
        for key in ("decode_fps_one_process", "mediapipe_alone_fps_one_process", "naive_fps", "build_fps",
                    "mediapipe_alone_fps_all_cores_at_once", "build_vs_mediapipe_alone_all_cores_at_once",
                    "build_vs_naive", "build_vs_mediapipe_alone_x_cores", "naive_core_hours_voxceleb2_dev",
                    "mediapipe_alone_core_hours_voxceleb2_dev"):
            assert figures[key] > 0, (name, key)
        rounds = figures["rounds"]
        assert len(rounds) == 2
        for one in rounds:
            assert one["build_vs_naive"] == round(one["build_fps"] / one["naive_fps"], 3)
            # on clips this short the rate beyond the fixed cost is noise; only its arithmetic is checked
            seconds, sizes = one["seconds"], (figures["first_frames"], figures["frames"])
            for what in ("naive", "build"):
                fixed, rate = fixed_and_rate((sizes[0], seconds[f"{what}_first"]), (sizes[1], seconds[what]))
                assert one[f"{what}_fps_beyond_fixed"] == round(rate, 1) and one[f"{what}_fixed_s"] == round(fixed, 2)
                assert one[f"{what}_core_hours_voxceleb2_dev"] == round(220e6 / (round(rate, 1) / 2) / 3600)
        assert figures["build_vs_naive"] == statistics.median(r["build_vs_naive"] for r in rounds)


def test_two_runs_give_the_fixed_cost_and_the_rate_beyond_it():
    # 2 s per run and 500 frames/s: 1,000 frames take 4 s, 10,000 take 22 s
    assert fixed_and_rate((1000, 4.0), (10000, 22.0)) == (2.0, 500.0)
