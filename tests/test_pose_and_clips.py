import numpy as np
import pytest

from voxmesh.pipelines.ingest.clips import ClipRules, frame_problems, reason_for_no_clip, segment
from voxmesh.recon.pose import remove_pose, umeyama, umeyama_batch
from voxmesh.schemas import Reason, get_topology


def random_rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def test_umeyama_recovers_a_known_similarity():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(40, 3))
    rotation, scale, translation = random_rotation(rng), 2.7, np.array([10.0, -3.0, 0.5])
    scale_fit, rotation_fit, translation_fit = umeyama(source, scale * source @ rotation.T + translation)
    assert scale_fit == pytest.approx(scale, rel=1e-9)
    np.testing.assert_allclose(rotation_fit, rotation, atol=1e-9)
    np.testing.assert_allclose(translation_fit, translation, atol=1e-9)
    assert np.linalg.det(rotation_fit) == pytest.approx(1.0)


def test_umeyama_never_returns_a_reflection():
    rng = np.random.default_rng(1)
    source = rng.normal(size=(20, 3))
    mirrored = source * np.array([-1.0, 1.0, 1.0])
    assert np.linalg.det(umeyama(source, mirrored)[1]) == pytest.approx(1.0)


def test_umeyama_fits_a_batch_of_targets_as_it_fits_each_one():
    rng = np.random.default_rng(3)
    source = rng.normal(size=(20, 3))
    rotation, shift = random_rotation(rng), rng.normal(size=3)
    targets = np.stack([2.0 * source @ rotation.T + shift,
                        source * np.array([-1.0, 1.0, 1.0]),  # a reflection in the batch
                        source @ random_rotation(rng).T + 0.1 * rng.normal(size=(20, 3))])
    scales, rotations, translations = umeyama_batch(source, targets)
    # umeyama runs umeyama_batch on one target, so the first target's known answer checks both
    np.testing.assert_allclose(rotations[0], rotation, atol=1e-9)
    np.testing.assert_allclose(translations[0], shift, atol=1e-9)
    assert scales.shape == (3,) and rotations.shape == (3, 3, 3) and translations.shape == (3, 3)
    for target, scale, rotation, translation in zip(targets, scales, rotations, translations):
        one = umeyama(source, target)
        assert one[0] == pytest.approx(scale, rel=1e-12)
        np.testing.assert_allclose(one[1], rotation, atol=1e-12)
        np.testing.assert_allclose(one[2], translation, atol=1e-12)
        assert np.linalg.det(rotation) == pytest.approx(1.0)
    assert scales[0] == pytest.approx(2.0, rel=1e-9)


def test_remove_pose_undoes_head_motion_and_keeps_expression():
    rng = np.random.default_rng(2)
    topology = get_topology("mediapipe478")
    template = topology.template.astype(np.float64)
    expression = np.zeros_like(template)
    expression[topology.lip_idx, 1] = -0.4  # jaw drop on the lips only, stable vertices untouched
    frames, poses = [], []
    for _ in range(5):
        rotation, scale, translation = random_rotation(rng), rng.uniform(5, 30), rng.uniform(-200, 200, 3)
        frames.append(scale * (template + expression) @ rotation.T + translation)
        poses.append((scale, rotation, translation))
    canonical, pose, residual = remove_pose(np.stack(frames), template, topology.stable_idx)
    np.testing.assert_allclose(canonical, np.broadcast_to(template + expression, canonical.shape), atol=1e-6)
    np.testing.assert_allclose(residual, 0, atol=1e-6)
    scale, rotation, translation = poses[0]
    np.testing.assert_allclose(pose[0][:3, :3], scale * rotation, atol=1e-6)
    np.testing.assert_allclose(pose[0][:3, 3], translation, atol=1e-6)


def test_segment_drops_short_runs_and_splits_long_ones_evenly():
    usable = np.array([1] * 30 + [0] + [1] * 120 + [0] * 3 + [1] * 49, dtype=bool)
    clips = segment(usable, min_frames=50, max_frames=50)
    assert clips == [(31, 71), (71, 111), (111, 151)]
    assert segment(np.ones(100, bool), 50, 500) == [(0, 100)]
    assert segment(np.zeros(100, bool), 50, 500) == []


def test_frame_problems_and_the_reason_for_no_clip():
    rules = ClipRules(min_confidence=0.5)
    n_faces = np.array([0, 2, 1, 1, 1])
    problems = frame_problems(n_faces, valid=np.array([False, False, True, True, True]),
                              confidence=np.array([0, 0, 0.2, 0.9, 0.9]),
                              has_audio=np.array([True] * 4 + [False]), clip_rules=rules)
    assert problems == [Reason.NO_FACE, Reason.MULTIPLE_FACES, Reason.LOW_CONFIDENCE, None,
                        Reason.AV_LENGTH_MISMATCH]
    assert reason_for_no_clip(problems) == Reason.TOO_SHORT
    assert reason_for_no_clip([Reason.NO_FACE] * 3 + [Reason.MULTIPLE_FACES]) == Reason.NO_FACE
