"""Which face a generated clip is placed on (issue: no leakage at evaluation): another clip of the
same speaker, else the target sample's ``neutral.npy`` (identity only), else the topology's
template; never the target clip's own mean face. ``voxmesh eval`` measures from the same face.

The dataset is written here with known faces: every clip's mesh is its neutral face plus a constant
jaw-opening offset plus small motion, so its mean face differs from its neutral by that offset."""

import dataclasses
import os

import numpy as np
import pytest
from test_schema_and_validate import make_sample, write_dataset

from voxmesh.cli import main
from voxmesh.metrics.evaluate import SHUFFLED, TEMPLATE_ONLY, evaluate
from voxmesh.schemas import (
    Sample,
    get_topology,
    make_key,
)

TOPOLOGY = get_topology("mediapipe478")
N_FRAMES = 60
OPENING = np.array([0.0, -0.4, 0.1], dtype=np.float32)  # every clip's mean face is its neutral moved by this


def clip(speaker: str, index: int, split: str, neutral: np.ndarray | None, seed: int) -> Sample:
    face = TOPOLOGY.template if neutral is None else neutral
    motion = 0.05 * np.random.default_rng(seed).standard_normal((N_FRAMES, TOPOLOGY.n_vertices, 3))
    return dataclasses.replace(make_sample(speaker, index, N_FRAMES, seed, split),
                               mesh=(face + OPENING + motion - motion.mean(0)).astype(np.float32), neutral=neutral)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """test split: ``solo`` (one clip with a neutral), ``bare`` (one clip without), ``pair`` (two
    clips with neutrals); train split: two speakers of two clips each, for a short training run."""
    rng = np.random.default_rng(7)

    def neutral() -> np.ndarray:
        return (TOPOLOGY.template + rng.normal(0, 0.3, TOPOLOGY.template.shape)).astype(np.float32)

    shards = {
        ("test", 0): [clip("bare", 0, "test", None, 1), clip("pair", 0, "test", neutral(), 2),
                      clip("pair", 1, "test", neutral(), 3), clip("solo", 0, "test", neutral(), 4)],
        ("train", 0): [clip(speaker, i, "train", neutral(), 10 + 2 * n + i)
                       for n, speaker in enumerate(("trainA", "trainB")) for i in (0, 1)],
    }
    out = str(tmp_path_factory.mktemp("templates") / "dataset")
    write_dataset(out, shards)
    assert main(["validate", out]) == 0
    return out, {s.key: s for samples in shards.values() for s in samples}


@pytest.fixture(scope="module")
def generated(dataset, tmp_path_factory):
    out, _ = dataset
    run = str(tmp_path_factory.mktemp("faceformer_run"))
    configs = os.path.join(os.path.dirname(__file__), "..", "models", "configs")
    assert main(["train", "--config", os.path.join(configs, "faceformer.toml"), "--set", f"data.dataset={out}",
                 "--set", f"out={run}", "--set", "train.steps=2", "--set", "data.window=16",
                 "--set", "data.batch_size=2", "--set", "generator.dim=32"]) == 0
    predictions = str(tmp_path_factory.mktemp("predictions"))
    assert main(["generate", "--checkpoint", os.path.join(run, "last.pt"), "--data", out, "--split", "test",
                 "--out", predictions]) == 0
    return predictions


def template_of(predictions: str, key: str) -> np.ndarray:
    return np.load(os.path.join(predictions, "templates", f"{key}.npy"))


def test_a_speaker_with_one_clip_is_placed_on_its_neutral_never_its_mean_face(dataset, generated):
    _, samples = dataset
    solo = samples[make_key("solo", "vid", "00001", 0, 0)]
    template = template_of(generated, solo.key)
    np.testing.assert_array_equal(template, solo.neutral)
    assert np.abs(template - solo.mesh.mean(0)).max() > 0.3  # the target's mean face carries its jaw opening
    assert np.abs(template - TOPOLOGY.template).max() > 0.3


def test_another_clip_of_the_speaker_comes_first_and_the_topology_template_last(dataset, generated):
    _, samples = dataset
    first, second = (samples[make_key("pair", "vid", "00001", 0, i)] for i in (0, 1))
    np.testing.assert_allclose(template_of(generated, first.key), second.mesh.mean(0), atol=1e-6)
    np.testing.assert_allclose(template_of(generated, second.key), first.mesh.mean(0), atol=1e-6)
    bare = make_key("bare", "vid", "00001", 0, 0)
    np.testing.assert_array_equal(template_of(generated, bare), TOPOLOGY.template.astype(np.float32))
    meshes = np.load(os.path.join(generated, f"{bare}.npy"))
    assert meshes.shape == (1, N_FRAMES, TOPOLOGY.n_vertices, 3)


def lip_error_of_still(face: np.ndarray, sample: Sample) -> float:
    """CodeTalker's lip vertex error of ``face`` held still against ``sample``'s mesh."""
    lips = TOPOLOGY.lip_idx
    return float(((face[None, lips] - sample.mesh[:, lips]) ** 2).sum(-1).max(1).mean())


def test_eval_measures_from_the_same_template_when_predictions_carry_none(dataset, generated, tmp_path):
    """Predictions without ``templates/``: eval's own rule. Its "template only" row holds each clip's
    template still, so its lip vertex error tells which faces the rule chose: for the solo clip the
    neutral gives the jaw opening's error on top of the motion's, its own mean face the motion's alone."""
    out, samples = dataset
    solo, bare = samples[make_key("solo", "vid", "00001", 0, 0)], samples[make_key("bare", "vid", "00001", 0, 0)]
    first, second = (samples[make_key("pair", "vid", "00001", 0, i)] for i in (0, 1))
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    np.save(predictions / f"{solo.key}.npy", np.load(os.path.join(generated, f"{solo.key}.npy")))
    template_only = evaluate({"model": str(predictions)}, out, "test")[TEMPLATE_ONLY]
    assert template_only["clips"] == 4
    on_neutral, on_own_mean = lip_error_of_still(solo.neutral, solo), lip_error_of_still(solo.mesh.mean(0), solo)
    assert on_neutral > 2 * on_own_mean
    others = [lip_error_of_still(second.mesh.mean(0), first), lip_error_of_still(first.mesh.mean(0), second),
              lip_error_of_still(TOPOLOGY.template, bare)]
    # clips of equal length: the frames pooled weigh each clip equally
    assert template_only["lip_vertex_error"] == pytest.approx((on_neutral + sum(others)) / 4, rel=1e-5)


def test_a_split_of_one_clip_keeps_the_shuffled_row_with_a_note_saying_why_it_is_empty(tmp_path, capsys):
    """The shuffled-audio row pairs each clip's motion with another clip's audio: with one clip it
    cannot be computed, and the table says so instead of leaving the row out."""
    only = clip("solo", 0, "test", None, 1)
    out = str(tmp_path / "dataset")
    write_dataset(out, {("test", 0): [only]})
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    np.save(predictions / f"{only.key}.npy", only.mesh[None])
    assert main(["eval", "--pred", str(predictions), "--ref", out, "--split", "test", "--out", str(tmp_path / "r")]) == 0
    printed = capsys.readouterr()
    assert "| context: ground truth, shuffled audio | " in printed.out
    assert "shuffled audio: needs two clips or more" in printed.err and "evaluate a larger split" in printed.err
    assert evaluate({"model": str(predictions)}, out, "test")[SHUFFLED]["clips"] == 0
