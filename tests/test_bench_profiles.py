"""The profiles the README's "where each millisecond goes" figures come from run on the real clips
and account for their time (no timing is asserted)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
import profile_face_mesh_graph  # noqa: E402
import profile_ingest  # noqa: E402


@pytest.mark.parametrize("graph, model", [("face_mesh", "facelandmarkcpu / InferenceCalculator"),
                                          ("short_range", "facedetectionshortrange / InferenceCalculator"),
                                          ("full_range", "facedetectionfullrange / InferenceCalculator")])
def test_a_graph_profile_puts_its_model_first(graph, model, media_dir, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["profile_face_mesh_graph.py", "--graph", graph, "--media", media_dir,
                                      "--frames", "40"])
    profile_face_mesh_graph.main()
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"| {graph} calculator (")
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in out[2:]]
    assert rows[0][0] == model and 0 < int(rows[0][1]) <= 40
    assert rows[-1][0] == "**all**"
    listed = sum(float(row[2]) for row in rows[:-1])
    assert abs(listed - float(rows[-1][2])) < 0.01 and float(rows[0][2]) > 0


def test_the_ingest_profile_covers_every_frame_and_step_and_sets_the_script_beside_it(media_dir):
    names = profile_ingest.CLIPS
    timed = [getattr(owner, name) for _, owner, name in profile_ingest.steps() if owner is not None]
    run, = profile_ingest.profile([os.path.join(media_dir, n) for n in names], runs=1)["runs"]
    per_frame = run["ingest"]
    assert per_frame["frames"] > 400
    steps = [what for what, _, _ in profile_ingest.steps()]
    assert set(steps) < set(per_frame) and all(per_frame[what] > 0 for what in steps)
    top = [what for what in steps if not what.startswith("of which")]
    assert abs(sum(per_frame[what] for what in top) + per_frame["everything else"] - per_frame["total"]) < 0.01
    for parent, child in [(0, 1), (0, 2), (0, 3), (4, 5), (14, 15)]:  # an "of which" row is inside its step
        assert steps[child].startswith("of which") and per_frame[steps[child]] <= per_frame[steps[parent]]
    graphs = per_frame["of which MediaPipe's Face Mesh graph"] + per_frame["of which MediaPipe's BlazeFace graphs"]
    assert abs(per_frame[profile_ingest.GRAPHS] - graphs) < 0.002
    assert run["naive_script_ms"] > 0 and abs(run["at_1.5x_the_script_ms"] * 1.5 - run["naive_script_ms"]) < 0.002
    assert run["script_vs_ingest"] == round(run["naive_script_ms"] / per_frame["total"], 3)
    assert [getattr(owner, name) for _, owner, name in profile_ingest.steps() if owner is not None] == timed
