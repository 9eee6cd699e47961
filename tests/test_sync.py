"""The audio-visual offset estimator: right within one frame or absent (issue: audio-visual
offsets that can be trusted)."""

import numpy as np
import pytest

from voxmesh.metrics.sync import Abstain, estimate_offset, lip_measures, loudness
from voxmesh.pipelines.demo import mouth_openness, speech_like
from voxmesh.schemas import SAMPLES_PER_FRAME, get_topology

TOPOLOGY = get_topology("mediapipe478")
SECONDS = 8.0


def talking_mesh(opening: np.ndarray) -> np.ndarray:
    """The template with its lower lip lowered by ``opening`` (template units) per frame."""
    mesh = np.repeat(TOPOLOGY.template[None].astype(np.float64), len(opening), axis=0)
    lips = TOPOLOGY.lip_idx
    lower = lips[TOPOLOGY.template[lips, 1] <= TOPOLOGY.template[lips, 1].mean()]
    mesh[:, lower, 1] -= opening[:, None]
    return mesh


def shifted(audio: np.ndarray, frames: int) -> np.ndarray:
    """``audio`` played ``frames`` frames later (positive) or earlier, same length, silence in."""
    step = frames * SAMPLES_PER_FRAME
    if step >= 0:
        return np.concatenate([np.zeros(step, audio.dtype), audio[:len(audio) - step]])
    return np.concatenate([audio[-step:], np.zeros(-step, audio.dtype)])


def speaker(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A speech-like signal and a mouth that opens with its loudness (in sync)."""
    audio = speech_like(SECONDS, seed)
    return talking_mesh(0.8 * mouth_openness(audio)), audio


def test_lip_opening_and_loudness_measure_what_they_say():
    opening = np.linspace(0, 1, 50)
    mesh = talking_mesh(opening)
    height = np.ptp(TOPOLOGY.template[TOPOLOGY.lip_idx, 1])
    measures = lip_measures(mesh, TOPOLOGY) - lip_measures(mesh[:1], TOPOLOGY)
    np.testing.assert_allclose(measures[0] * height, opening, atol=1e-5)  # all lip vertices
    np.testing.assert_allclose(measures[1] * height, opening, atol=1e-5)  # the central third
    audio = np.concatenate([np.zeros(10 * SAMPLES_PER_FRAME), 0.5 * np.sin(np.arange(40 * SAMPLES_PER_FRAME) * 0.2)])
    level = loudness(audio.astype(np.float32))
    assert level.shape == (50,) and level[:9].max() < level[10:].min() - 4  # silence: 40 dB down, flat


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("lag", [-6, -3, 0, 4])
def test_a_known_shift_of_synthetic_speech_is_recovered_within_one_frame(seed, lag):
    mesh, audio = speaker(seed)
    estimate = estimate_offset(mesh, shifted(audio, lag), TOPOLOGY)
    assert estimate.offset is not None and abs(estimate.offset - lag) <= 1, estimate.reason
    assert estimate.reason is None and estimate.confidence >= 3


@pytest.mark.parametrize("seed", range(8))
def test_a_mouth_that_says_other_words_gets_no_confident_offset(seed):
    """Speech and a moving mouth, but not the same utterance: any peak is chance, and the
    estimator must say so (a wrong confident number is the failure this guards against)."""
    mesh, _ = speaker(seed)
    _, other = speaker(seed + 100)
    estimate = estimate_offset(mesh, other, TOPOLOGY)
    assert estimate.offset is None and estimate.reason in {Abstain.WEAK, Abstain.AMBIGUOUS, Abstain.DISAGREE}


@pytest.mark.parametrize("kind", ["tone", "noise", "silence", "hum"])
def test_audio_that_is_not_speech_gets_no_offset(kind):
    mesh, _ = speaker(0)
    n = mesh.shape[0] * SAMPLES_PER_FRAME
    t = np.arange(n) / 16000
    rng = np.random.default_rng(5)
    audio = {"tone": 0.3 * np.sin(2 * np.pi * 440 * t), "noise": 0.1 * rng.standard_normal(n), "silence": np.zeros(n),
             "hum": 0.2 * np.sign(np.sin(2 * np.pi * 100 * t)) + 0.01 * rng.standard_normal(n)}[kind]
    estimate = estimate_offset(mesh, audio.astype(np.float32), TOPOLOGY)
    assert estimate.offset is None and estimate.reason == Abstain.NOT_SPEECH


def test_a_still_mouth_or_a_short_clip_gets_no_offset():
    mesh, audio = speaker(0)
    still = estimate_offset(np.repeat(mesh[:1], len(mesh), axis=0), audio, TOPOLOGY)
    assert still.offset is None and still.reason == Abstain.STILL_MOUTH
    short = estimate_offset(mesh[:50], audio[:50 * SAMPLES_PER_FRAME], TOPOLOGY)
    assert short.offset is None and short.reason == Abstain.TOO_SHORT


def test_the_stats_report_plots_offsets_and_their_confidences(tmp_path):
    from voxmesh.pipelines.dataset.report import summarize, write_report
    rows = [{"key": f"s_v_u_000_{i:03d}", "speaker": "s", "split": "train", "n_frames": 100, "confidence_mean": 0.9,
             "av_offset": offset, "av_offset_confidence": confidence, "av_offset_ok": ok, "av_offset_reason": reason}
            for i, (offset, confidence, ok, reason) in enumerate([(0, 5.2, True, None), (1, 4.4, True, None),
                                                                   (9, 6.0, False, None), (None, 1.2, True, "weak_peak"),
                                                                   (None, 0.0, True, "not_speech")])]
    summary = summarize(rows, [])
    assert summary["av_offset"] == {"reported": 3, "flagged": 1, "none_by_reason": {"not_speech": 1, "weak_peak": 1}}
    page = write_report(str(tmp_path), rows, [], summary, max_pose_samples=0)
    text = open(page, encoding="utf-8").read()
    for name in ("av_offset", "av_offset_confidence"):
        assert f'src="{name}.png"' in text and (tmp_path / "report" / f"{name}.png").stat().st_size > 1000
    assert "2 clips without one" in text
