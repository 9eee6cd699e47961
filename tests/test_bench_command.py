"""The command's benches: bench/bench_command.py runs every variant of the command's start and
both of its exit after a real build, one row each; bench/trace_build_stages.py times each stage
of a real build (no timing is asserted)."""

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


def test_the_stage_trace_times_every_stage_of_a_real_build(media_dir, monkeypatch, capsys):
    import trace_build_stages
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    untraced = fn_runner.FnApiRunner._execute_bundle
    monkeypatch.setattr(sys, "argv", ["trace_build_stages.py", "--input", media_dir, "--workers", "1"])
    trace_build_stages.main()
    assert fn_runner.FnApiRunner._execute_bundle is untraced  # Beam is left as it was
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]  # after the build's summary
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in table[2:]]
    steps = [row[0] for row in rows]
    assert steps[0].startswith("importing the command line") and steps[2].startswith("voxmesh build")
    assert steps[3] == "stage PlanParts + SpreadParts" and steps[4].startswith("stage SpreadParts + BuildPart")
    assert sum(step.startswith("stage ") for step in steps) >= 4 and steps.count("stopping a worker") == 1
    assert all(float(row[3]) >= 0 and float(row[2]) <= float(rows[2][2]) + 0.01 for row in rows)
