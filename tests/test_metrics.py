import numpy as np
import pytest
import torch
from test_schema_and_validate import TOPOLOGY, make_sample

from voxmesh.metrics import (
    coverage_lip_error,
    diversity,
    frechet_distance,
    lip_vertex_error,
    mean_sample_lip_error,
    mean_vertex_error,
    scores,
    upper_face_dynamics_deviation,
)
from voxmesh.metrics.quality import jitter, lip_motion

LIPS = np.array([0, 1])
UPPER = np.array([2, 3])


def tiny_pair():
    """Two frames, four vertices; errors only where stated."""
    gt = np.zeros((2, 4, 3))
    pred = gt.copy()
    pred[0, 0] = [3, 4, 0]   # lip vertex 0, frame 0: error 5
    pred[0, 1] = [1, 0, 0]   # lip vertex 1, frame 0: error 1
    pred[1, 1] = [0, 0, 2]   # lip vertex 1, frame 1: error 2
    pred[1, 3] = [0, 6, 8]   # upper vertex 3, frame 1: error 10
    return pred, gt


def codetalker_lve(preds, gts, lip):
    """CodeTalker's ``main/cal_metric.py``, written out: the frames of all sequences stacked, per
    frame the squared distance summed over x, y, z for each lip vertex, the max over lip vertices,
    the mean over all frames."""
    gt_all, pred_all = np.concatenate(gts), np.concatenate(preds)
    per_vertex = np.array([np.square(gt_all[:, v, :] - pred_all[:, v, :]) for v in lip])  # (L, F, 3)
    per_vertex = np.transpose(per_vertex, (1, 0, 2)).sum(axis=2)  # (F, L)
    return per_vertex.max(axis=1).mean()


def meshtalk_lve(preds, gts, lip):
    """The MeshTalk / FaceFormer text: per frame the maximal L2 error over lip vertices, averaged
    over all frames."""
    frames = [max(np.linalg.norm(p[t, v] - g[t, v]) for v in lip)
              for p, g in zip(preds, gts) for t in range(len(g))]
    return np.mean(frames)


def codetalker_fdd(preds, gts, upper, templates):
    """CodeTalker's FDD, written out: per sequence the mean over upper-face vertices of the std
    over time of the squared displacement from the template, gt minus pred; mean over sequences."""
    differences = []
    for pred, gt, template in zip(preds, gts, templates):
        spreads = []
        for x in (gt, pred):
            motion = x - template[None]
            squared = np.transpose(np.array([np.square(motion[:, v, :]) for v in upper]), (1, 0, 2)).sum(axis=2)
            spreads.append(np.mean(np.std(squared, axis=0)))
        differences.append(spreads[0] - spreads[1])
    return sum(differences) / len(differences)


def test_lip_vertex_error_matches_both_published_formulas_on_fixed_arrays():
    rng = np.random.default_rng(5)
    lips = np.array([1, 4, 6])
    gts = [rng.normal(size=(n, 8, 3)) for n in (3, 7, 12)]  # sequences of different lengths
    preds = [g + rng.normal(0, 0.3, g.shape) for g in gts]
    assert lip_vertex_error(preds, gts, lips) == pytest.approx(codetalker_lve(preds, gts, lips), rel=1e-12)
    assert lip_vertex_error(preds, gts, lips, squared=False) == pytest.approx(meshtalk_lve(preds, gts, lips), rel=1e-12)
    # pooled over frames, not averaged per sequence: the 12-frame sequence weighs 12/22
    per_sequence = np.mean([lip_vertex_error(p, g, lips) for p, g in zip(preds, gts)])
    assert lip_vertex_error(preds, gts, lips) != pytest.approx(per_sequence)
    assert lip_vertex_error(torch.tensor(preds[0]), torch.tensor(gts[0]), lips) == pytest.approx(
        codetalker_lve(preds[:1], gts[:1], lips))


def test_lip_vertex_error_by_hand_on_two_frames():
    pred, gt = tiny_pair()
    # frame 0: lip errors 5 and 1 -> max squared 25; frame 1: lip errors 0 and 2 -> max squared 4
    assert lip_vertex_error(pred, gt, LIPS) == pytest.approx((25 + 4) / 2)
    assert lip_vertex_error(pred, gt, LIPS, squared=False) == pytest.approx((5 + 2) / 2)
    # pooled: a 1-frame sequence with max squared error 9 and a 3-frame one with 1 per frame
    one, three = np.zeros((1, 4, 3)), np.zeros((3, 4, 3))
    moved_one, moved_three = one.copy(), three.copy()
    moved_one[0, 0] = [3, 0, 0]
    moved_three[:, 1] = [1, 0, 0]
    assert lip_vertex_error([moved_one, moved_three], [one, three], LIPS) == pytest.approx((9 + 3) / 4)
    assert mean_vertex_error(pred, gt) == pytest.approx((5 + 1 + 2 + 10) / 8)


def test_fdd_matches_codetalkers_formula_and_its_sign():
    rng = np.random.default_rng(6)
    upper = np.array([0, 2, 3, 7])
    templates = [rng.normal(size=(8, 3)) for _ in range(3)]
    gts = [t + rng.normal(0, 0.5, (n, 8, 3)) for t, n in zip(templates, (4, 9, 15))]
    preds = [t + rng.normal(0, 0.8, g.shape) for t, g in zip(templates, gts)]
    assert upper_face_dynamics_deviation(preds, gts, upper, templates) == pytest.approx(
        codetalker_fdd(preds, gts, upper, templates), rel=1e-12)
    # an upper face moving twice as much as the truth: negative (gt minus pred)
    doubled = [t + 2 * (g - t) for t, g in zip(templates, gts)]
    assert upper_face_dynamics_deviation(doubled, gts, upper, templates) < 0
    assert upper_face_dynamics_deviation(gts, gts, upper, templates) == 0


def test_fdd_by_hand_on_two_frames():
    pred, gt = tiny_pair()
    # pred upper vertex 3 is displaced by 0 then 10: squared 0 and 100, std 50; vertex 2 and all of gt: 0
    assert upper_face_dynamics_deviation(pred, gt, UPPER, np.zeros((4, 3))) == pytest.approx(0 - (0 + 50) / 2)
    # the template matters: from (0, 6, 0), vertex 3 of pred is displaced by 36 then 64 (squared; std 14),
    # gt stays at 36 (std 0)
    template = np.zeros((4, 3))
    template[3] = [0, 6, 0]
    assert upper_face_dynamics_deviation(pred, gt, UPPER, template) == pytest.approx(0 - (0 + 14) / 2)


def test_coverage_mean_of_samples_and_diversity():
    pred, gt = tiny_pair()
    samples = np.stack([pred, gt, 2 * pred])  # squared lip errors 14.5, 0, 58
    assert coverage_lip_error(samples, gt, LIPS) == pytest.approx(0.0)
    assert coverage_lip_error(samples[[0, 2]], gt, LIPS) == pytest.approx(14.5)
    assert mean_sample_lip_error(samples, gt, LIPS) == pytest.approx(lip_vertex_error(pred, gt, LIPS))
    assert diversity(np.stack([gt, gt, gt])) == 0
    # pairs: (pred, gt) 18/8, (pred, 2pred) 18/8, (gt, 2pred) 36/8
    assert diversity(samples) == pytest.approx((18 / 8 + 18 / 8 + 36 / 8) / 3)
    with pytest.raises(ValueError):
        diversity(samples[:1])


def test_errors_are_zero_for_identical_inputs_and_grow_with_noise():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=(30, 10, 3))
    assert lip_vertex_error(truth, truth, LIPS) == 0 and mean_vertex_error(truth, truth) == 0
    errors = [lip_vertex_error(truth + rng.normal(0, s, truth.shape), truth, LIPS) for s in (0.01, 0.1, 1.0)]
    assert errors == sorted(errors)


def test_frechet_distance_is_zero_for_one_set_and_grows_with_a_shift():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(500, 4))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    # two Gaussians that differ only by a mean shift of 3 along one axis: FD close to 9
    assert frechet_distance(a, a + [3, 0, 0, 0]) == pytest.approx(9, rel=1e-6)
    with pytest.raises(ValueError, match="more than 4"):
        frechet_distance(a[:4], a)


def test_package_root_exports_the_metrics():
    import voxmesh.metrics as metrics
    from voxmesh.metrics import motion
    assert metrics.lip_vertex_error is motion.lip_vertex_error
    assert metrics.upper_face_dynamics_deviation is motion.upper_face_dynamics_deviation


def test_quality_figures_lip_motion_and_jitter():
    still = np.zeros((10, 4, 3))
    assert lip_motion(still, LIPS) == 0 and jitter(still, UPPER) == 0
    moving = still.copy()
    moving[:, 0, 1] = np.arange(10) * 0.1  # 0.1 per frame = 2.5 per second at 25 fps
    assert lip_motion(moving, LIPS) == pytest.approx(2.5 / 2)
    assert jitter(moving, np.array([0])) == pytest.approx(0)  # constant speed: no jitter
    shaky = still.copy()
    shaky[::2, 2, 0] = 1.0
    assert jitter(shaky, UPPER) > 0.5


def test_style_matching_takes_the_nearest_speaker_without_the_targets_own_truth():
    from voxmesh.metrics.style import style_matching
    axes = np.eye(3)
    speaker_of = {"a1": "a", "a2": "a", "b1": "b", "b2": "b", "c1": "c"}
    truth = {"a1": axes[0], "a2": axes[0], "b1": axes[1], "b2": axes[1], "c1": axes[2]}
    own = {"a1": axes[0], "a2": axes[0], "b1": axes[1], "b2": axes[1], "c1": axes[2]}
    # c1's speaker has no other clip: not scored (its own truth must not be its reference)
    assert style_matching(own, truth, speaker_of) == (1.0, 4)
    swapped = {"a1": axes[1], "a2": axes[0], "b1": axes[0], "b2": axes[2]}
    assert style_matching(swapped, truth, speaker_of) == (0.25, 4)
    # the target's own truth is left out of its speaker's mean: a2's generated clip is near a2's own
    # truth (axis 0) and leans to b (axis 1); a's other clip a1 points along axis 2, so b is nearest.
    # Were a2's truth counted, a's mean would score 0.63 against b's 0.45 and a2 would match.
    truth_apart = dict(truth, a1=axes[2])
    leaning = (axes[0] + 0.5 * axes[1]) / np.linalg.norm(axes[0] + 0.5 * axes[1])
    assert style_matching({"a2": leaning}, truth_apart, speaker_of) == (0.0, 1)
    with pytest.raises(ValueError, match="at least 2 speakers"):
        style_matching({"a1": axes[0]}, {"a1": axes[0], "a2": axes[0]}, speaker_of)
    with pytest.raises(ValueError, match="two clips or more"):
        style_matching({"c1": axes[2]}, truth, speaker_of)


def test_offset_averages_the_clips_with_a_correlation_peak_in_every_sample(monkeypatch):
    """|offset| with N samples: a clip where some sample has no peak (NaN) is left out of every
    sample's mean, so that each sample averages the same clips, and the note counts it."""
    lags = iter([1.0, float("nan"), 2.0, 4.0])  # clip 0: samples (1, no peak); clip 1: (2, 4)
    monkeypatch.setattr(scores, "_peak_lag", lambda *_: next(lags))
    row = scores.ModelScores(scores.Evaluators())
    for clip in (0, 1):
        sample = make_sample("spk", clip)
        row.add(sample, np.stack([sample.mesh, sample.mesh]), TOPOLOGY.template, TOPOLOGY)
    result = row.summary(row)
    assert result["mean_abs_av_offset"] == 3.0 and result["mean_abs_av_offset_std"] == 1.0
    assert any(note.startswith("|offset|: 1 of 2 clips have no correlation peak") for note in result["notes"])
