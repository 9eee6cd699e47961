"""Two backends from one run (`--backend mediapipe,flame`) give two datasets that pair clip for
clip (same keys, splits, clip boundaries, audio and failures); `voxmesh validate PARENT` checks
the pairing and finds a clip boundary that differs."""

import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
from flame_synthetic import synthetic_flame

from voxmesh.cli import main
from voxmesh.recon.flame import MODEL_ENV
from voxmesh.schemas import iter_samples


def test_two_backends_from_one_run_give_paired_datasets(media_dir, tmp_path, monkeypatch, capsys):
    np.savez(tmp_path / "flame.npz", **synthetic_flame())
    monkeypatch.setenv(MODEL_ENV, str(tmp_path / "flame.npz"))
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(os.path.join(media_dir, "retalking2_844_25fps.mp4"), inputs / "clip.mp4")
    output = tmp_path / "out"
    assert main(["build", "--input", str(inputs), "--output", str(output), "--backend", "mediapipe,flame",
                 "--workers", "1"]) == 0
    assert sorted(os.listdir(output)) == ["flame", "mediapipe"]
    samples = {name: {s.key: s for s in iter_samples(str(output / name))} for name in ("mediapipe", "flame")}
    assert samples["mediapipe"] and samples["mediapipe"].keys() == samples["flame"].keys()
    for key, mp in samples["mediapipe"].items():
        fl = samples["flame"][key]
        assert (mp.meta.start_time, mp.meta.end_time, mp.meta.split) == (fl.meta.start_time, fl.meta.end_time,
                                                                          fl.meta.split)
        np.testing.assert_array_equal(mp.audio, fl.audio)
        assert mp.meta.topology == "mediapipe478" and fl.meta.topology == "flame5023"
        assert fl.coeffs is not None and mp.mesh.shape[0] == fl.mesh.shape[0]
        assert mp.neutral is None and fl.neutral.shape == fl.mesh.shape[1:]  # only FLAME has a neutral face
    for name in ("mediapipe", "flame"):
        with open(output / name / "dataset.json") as f:
            dataset = json.load(f)
        assert dataset["paired_backends"] == ["mediapipe", "flame"] and dataset["config"]["backend"] == name
    with open(output / "flame" / "dataset.json") as f:
        assert "+ibug+" in json.load(f)["backend_version"]  # which landmark embedding the fit used
    capsys.readouterr()
    assert main(["validate", str(output)]) == 0
    assert "in 2 paired datasets" in capsys.readouterr().err

    # a third dataset whose first clip ends one frame later does not pair
    shutil.copytree(output / "flame", output / "other")
    table = pq.read_table(output / "other" / "manifest.parquet")
    rows = table.to_pylist()
    rows[0]["end_time"] += 0.04
    pq.write_table(type(table).from_pylist(rows, schema=table.schema), output / "other" / "manifest.parquet")
    assert main(["validate", str(output)]) == 1
    assert f"{rows[0]['key']}: end_time is" in capsys.readouterr().out


def test_a_backend_list_with_a_repeat_or_a_gap_is_refused(tmp_path, capsys):
    for backends in ("mediapipe,mediapipe", "mediapipe,"):
        assert main(["build", "--input", str(tmp_path), "--output", str(tmp_path / "out"), "--backend", backends]) == 2
        assert "comma-separated list of different backends" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
