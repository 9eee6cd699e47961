"""Audio-visual offset without a learned model: cross-correlation, over lags, of the change of
mouth opening (from the mesh) and the change of speech loudness (log RMS per frame of the
300-3000 Hz band, where voiced speech carries its energy and hum and hiss do not)."""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import signal

from voxmesh.schemas import SAMPLE_RATE, SAMPLES_PER_FRAME, Topology, pcm_to_float

SPEECH_BAND = signal.butter(4, [300, 3000], btype="bandpass", fs=SAMPLE_RATE, output="sos")


@dataclasses.dataclass(frozen=True)
class OffsetEstimate:
    """``offset``: frames by which the audio lags the mouth (positive: audio later) at the best
    correlation; ``confidence``: that correlation minus the median over all lags (as SyncNet's
    confidence), near 0 when nothing stands out."""

    offset: int
    confidence: float
    correlations: np.ndarray


def mouth_opening(mesh: np.ndarray, topology: Topology) -> np.ndarray:
    """Per frame, mean height of the upper-lip vertices minus that of the lower-lip vertices in
    the head frame; upper and lower are the lip vertices above and below the lips' centre in the
    topology's template, so this works for any topology."""
    lips = topology.lip_idx
    heights = topology.template[lips, 1]
    upper, lower = lips[heights > heights.mean()], lips[heights <= heights.mean()]
    return mesh[:, upper, 1].mean(axis=1) - mesh[:, lower, 1].mean(axis=1)


def loudness(audio: np.ndarray) -> np.ndarray:
    """Per 25 fps frame, log RMS of its 640 samples in the speech band (int16 or float audio)."""
    n_frames = len(audio) // SAMPLES_PER_FRAME
    band = signal.sosfiltfilt(SPEECH_BAND, pcm_to_float(audio[:n_frames * SAMPLES_PER_FRAME]).astype(np.float64))
    return np.log(np.sqrt((band.reshape(n_frames, SAMPLES_PER_FRAME) ** 2).mean(axis=1)) + 1e-3)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def estimate_offset(mesh: np.ndarray, audio: np.ndarray, topology: Topology, max_lag: int = 15) -> OffsetEstimate:
    """Correlate the first differences of mouth opening and loudness at lags -max_lag..max_lag."""
    mouth = np.diff(mouth_opening(mesh, topology))
    sound = np.diff(loudness(audio))
    n = min(len(mouth), len(sound))
    mouth, sound = mouth[:n], sound[:n]
    lags = range(-max_lag, max_lag + 1)
    correlations = np.array([
        _pearson(mouth[:n - lag], sound[lag:]) if lag >= 0 else _pearson(mouth[-lag:], sound[:n + lag])
        if n - abs(lag) > 2 else 0.0 for lag in lags])
    best = int(np.argmax(correlations))
    return OffsetEstimate(offset=best - max_lag, confidence=float(correlations[best] - np.median(correlations)),
                          correlations=correlations)
