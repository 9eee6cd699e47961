"""The audio-visual offset estimator: right within one frame or absent (issue: audio-visual
offsets that can be trusted)."""

import numpy as np
import pytest

from voxmesh.metrics.sync import (
    FFT_BLOCK,
    SPEECH_BAND,
    Abstain,
    band_power_response,
    estimate_offset,
    lip_measures,
    loudness,
    speech_band,
)
from voxmesh.pipelines.demo import mouth_openness, speech_like, talking_mesh
from voxmesh.schemas import SAMPLES_PER_FRAME, get_topology

TOPOLOGY = get_topology("mediapipe478")
SECONDS = 8.0


def shifted(audio: np.ndarray, frames: int) -> np.ndarray:
    """``audio`` played ``frames`` frames later (positive) or earlier, same length, silence in."""
    step = frames * SAMPLES_PER_FRAME
    if step >= 0:
        return np.concatenate([np.zeros(step, audio.dtype), audio[:len(audio) - step]])
    return np.concatenate([audio[-step:], np.zeros(-step, audio.dtype)])


def speaker(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A speech-like signal and a mouth that opens with its loudness (in sync)."""
    audio = speech_like(SECONDS, seed)
    return talking_mesh(TOPOLOGY, 0.8 * mouth_openness(audio)), audio


def test_the_speech_band_is_scipys_butterworth_and_filters_as_sosfiltfilt(media_dir):
    """The written-out sections are scipy.signal.butter's; on real speech the frequency-domain
    filter gives sosfiltfilt's samples away from the ends, and the same loudness on every frame
    but the first and last (which start from rest instead of a steady state)."""
    from scipy import signal
    from scipy.io import wavfile
    np.testing.assert_allclose(SPEECH_BAND, signal.butter(4, [300, 3000], btype="bandpass", fs=16000, output="sos"),
                               rtol=1e-12, atol=1e-15)
    rate, samples = wavfile.read(f"{media_dir}/harvard_16k.wav")
    assert rate == 16000
    x = samples.astype(np.float64) / 32768
    expected, got = signal.sosfiltfilt(SPEECH_BAND, x), speech_band(x)
    assert np.abs(expected - got)[640:-640].max() < 1e-9 * np.abs(expected).max()
    audio = samples[:len(samples) // SAMPLES_PER_FRAME * SAMPLES_PER_FRAME]
    frames = audio.astype(np.float64).reshape(-1, SAMPLES_PER_FRAME) / 32768
    rms = np.sqrt((signal.sosfiltfilt(SPEECH_BAND, frames.reshape(-1)).reshape(frames.shape) ** 2).mean(axis=1))
    reference = np.log(rms + max(0.01 * np.percentile(rms, 95), 1e-6))
    ours = loudness(audio)
    np.testing.assert_allclose(ours[1:-1], reference[1:-1], atol=1e-9)
    assert np.abs(ours - reference).max() < 0.05
    with pytest.raises(ValueError, match="more than 27 samples"):
        speech_band(np.zeros(27))


def test_the_band_pass_response_is_freqz_squared_and_blocks_join_seamlessly():
    """The cached response is scipy's frequency response of the sections, squared; the
    overlap-save blocks give what one FFT of the whole zero-padded signal gives, at every length
    (one block, a block boundary, many blocks)."""
    from scipy import signal
    _, expected = signal.freqz_sos(SPEECH_BAND, worN=2 * np.pi * np.arange(FFT_BLOCK // 2 + 1) / FFT_BLOCK)
    np.testing.assert_allclose(band_power_response(), np.abs(expected) ** 2, atol=1e-12)
    rng = np.random.default_rng(0)
    for n in (28, 1000, 14_000, 14_336, 40_000, 200_000):
        x = rng.standard_normal(n)
        extended = np.concatenate([2 * x[0] - x[27:0:-1], x, 2 * x[-1] - x[-2:-29:-1]])
        size = len(extended) + 4096
        _, response = signal.freqz_sos(SPEECH_BAND, worN=2 * np.pi * np.arange(size // 2 + 1) / size)
        whole = np.fft.irfft(np.fft.rfft(extended, size) * np.abs(response) ** 2, size)[27:27 + n]
        assert np.abs(speech_band(x) - whole).max() < 1e-12 * np.abs(whole).max(), n


def test_lip_opening_and_loudness_measure_what_they_say():
    opening = np.linspace(0, 1, 50)
    mesh = talking_mesh(TOPOLOGY, opening)
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
