import numpy as np
import pytest
import torch

from voxmesh.metrics.motion import (
    coverage_lip_error,
    diversity,
    frechet_distance,
    lip_vertex_error,
    mean_sample_lip_error,
    mean_vertex_error,
    motion_features,
    upper_face_dynamics_deviation,
)
from voxmesh.metrics.quality import jitter, lip_motion
from voxmesh.schemas import get_topology

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


def test_lip_vertex_error_is_the_mean_over_frames_of_the_worst_lip_vertex():
    pred, gt = tiny_pair()
    assert lip_vertex_error(pred, gt, LIPS) == pytest.approx((5 + 2) / 2)
    assert mean_vertex_error(pred, gt) == pytest.approx((5 + 1 + 2 + 10) / 8)
    batched = lip_vertex_error(np.stack([pred, gt]), np.stack([gt, gt]), LIPS)
    np.testing.assert_allclose(batched, [3.5, 0.0])
    assert lip_vertex_error(torch.tensor(pred), torch.tensor(gt), LIPS) == pytest.approx(3.5)


def test_fdd_compares_the_temporal_spread_of_upper_face_motion():
    pred, gt = tiny_pair()
    template = np.zeros((4, 3))
    # pred upper vertex 3 moves by 0 then 10: std 5; vertex 2 and all of gt do not move: std 0
    assert upper_face_dynamics_deviation(pred, gt, UPPER, template) == pytest.approx((0 + 5) / 2)
    assert upper_face_dynamics_deviation(gt, gt, UPPER) == 0
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(50, 4, 3))
    small = upper_face_dynamics_deviation(truth + rng.normal(0, 0.1, truth.shape), truth, UPPER)
    large = upper_face_dynamics_deviation(truth + rng.normal(0, 1.0, truth.shape), truth, UPPER)
    assert large > small


def test_coverage_mean_of_samples_and_diversity():
    pred, gt = tiny_pair()
    samples = np.stack([pred, gt, 2 * pred])  # lip errors 3.5, 0, 7
    assert coverage_lip_error(samples, gt, LIPS) == pytest.approx(0.0)
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
    mesh = rng.normal(size=(100, 478, 3))
    features = motion_features(mesh, get_topology("mediapipe478").lip_idx)
    assert features.shape == (7, 160)


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
