"""The command bench (bench/bench_command.py) runs both variants of the command's start and of
its exit after a real build, and prints one row each (no timing is asserted)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
import bench_command  # noqa: E402

from voxmesh.cli import COMMANDS


def test_the_command_bench_times_both_starts_and_both_exits_after_a_build(media_dir, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bench_command.py", "--media", media_dir, "--rounds", "1", "--workers", "1"])
    bench_command.main()
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()[2:]]
    assert [row[0].strip() for row in rows] == [
        *(f"start: the command line for `{verb}` alone" for verb in COMMANDS), "start: the command line with every verb",
        "exit after a build, frozen", "exit after a build, not frozen"]
    assert all(float(row[1]) > 0 and float(row[2]) == float(row[1]) for row in rows)
