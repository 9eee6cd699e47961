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


def test_the_ingest_profile_covers_every_frame_and_step(media_dir):
    names = ("hdtf_aoc_512_25fps.mp4", "retalking2_844_25fps.mp4", "retalking4_700_30fps.mp4")
    per_frame = profile_ingest.profile_shared_media([os.path.join(media_dir, n) for n in names])
    assert per_frame["frames"] > 400
    steps = [what for what, _ in profile_ingest.steps()]
    assert set(steps) < set(per_frame) and per_frame[steps[0]] > 0
    total = per_frame["total (profiled; cProfile adds its own overhead)"]
    counted = sum(v for k, v in per_frame.items() if k in steps and not k.startswith("of which"))
    assert abs(counted + per_frame["everything else"] - total) < 0.1
