"""Audio-visual offset without a learned model, that says when it cannot tell.

Features, one value per 25 fps frame:

- mouth: two lip openings from the mesh in the head frame (:func:`lip_measures`), that of all
  lip vertices and that of the central ones;
- sound: the speech envelope, log RMS of the 300-3000 Hz band (:func:`loudness`), where voiced
  speech carries its energy and hum and hiss do not.

Both are high-passed (a 1 s moving average removed), so that slow drifts and long pauses do not
dominate and the syllable-rate structure decides the lag. The clip is cut into windows of
``window`` frames (hop ``hop``); per window and lag, the Pearson correlation of each lip measure
with the envelope moved by that lag; the curves of all windows and measures are averaged
(:func:`correlation_curve`). The offset is the searched lag (``-max_lag..max_lag``) of the
highest average.

Whether to believe it is a test against the clip itself (:func:`estimate_offset`): the same
average at every circular lag more than ``2 * max_lag`` away (:func:`far_lags`: mouth and speech
of the same clip, out of place) says how high chance alone goes on this clip, with its own
length, smoothness and speaking rhythm. The estimate is reported only when the peak stands
``min_z`` of those lags' standard deviations above their mean, beats every one of them and every
searched lag more than two frames away by ``min_margin`` deviations (the rhythm of syllables
gives side peaks a few frames away), and at least ``min_agreement`` of the windows put their own
peak within one frame of it. Otherwise ``offset`` is None with a reason (:class:`Abstain`).
Audio that is not speech (a tone, noise, silence) or a still mouth is refused before any
correlation.
"""

from __future__ import annotations

import dataclasses
import enum
import functools

import numpy as np

from voxmesh.schemas import SAMPLE_RATE, SAMPLES_PER_FRAME, Topology, pcm_to_float

HIGH_PASS_FRAMES = 25  # moving average removed from every feature: 1 s


class Abstain(str, enum.Enum):
    """Why a clip has no offset (``av_offset_reason``)."""

    TOO_SHORT = "too_short"        # fewer frames than one window plus the lag range on both sides
    NOT_SPEECH = "not_speech"      # little voicing, or an envelope without syllable-rate modulation
    STILL_MOUTH = "still_mouth"    # the lips barely move
    WEAK = "weak_peak"             # the peak is within what the clip reaches by chance
    AMBIGUOUS = "ambiguous_peak"   # a lag more than two frames away, or a chance alignment, is nearly as high
    DISAGREE = "windows_disagree"  # too few windows agree with the peak


@dataclasses.dataclass(frozen=True)
class OffsetEstimate:
    """``offset``: frames by which the audio lags the mouth (positive: audio later), or None with
    ``reason`` when the estimator cannot tell; ``best_lag``: the curve's peak whatever the
    verdict (0 when no curve was computed); ``confidence``: the peak's z-score against the
    chance alignments (:func:`far_lags`; 0 when not computed); ``margin``: the peak minus the
    highest chance alignment or searched lag more than two frames away, in the same deviations;
    ``agreement``: fraction of windows whose own peak is within one frame of ``best_lag``;
    ``correlations``: the average curve over lags ``-max_lag..max_lag``."""

    offset: int | None
    reason: str | None
    best_lag: int
    confidence: float
    margin: float
    agreement: float
    correlations: np.ndarray


@dataclasses.dataclass(frozen=True)
class SyncRules:
    """Parameters of :func:`estimate_offset` (frames at 25 fps)."""

    max_lag: int = 15           # lags searched: -max_lag..max_lag (0.6 s)
    window: int = 75            # 3 s: a dozen syllables
    hop: int = 5
    min_z: float = 4.0          # peak above the chance alignments' mean, in their standard deviations
    min_margin: float = 0.5     # peak above every chance alignment and searched lag >2 frames away, same unit
    min_chance_lags: int = 30   # far lags that measure chance (clip frames minus 4 max_lag + 1)
    max_chance_lags: int = 256  # on longer clips, this many spread evenly
    min_agreement: float = 0.5  # windows whose own peak is within one frame of the clip's
    min_voiced: float = 0.2     # fraction of frames with a clear pitch
    min_modulation: float = 0.3  # std of the log envelope at syllable rate (natural log units)
    min_mouth_motion: float = 0.02  # std of the lip opening over the lip height in the template


def lip_measures(mesh: np.ndarray, topology: Topology) -> np.ndarray:
    """(2, T) lip openings in the head frame, each divided by the template's lip height: the
    mean height of the upper lip vertices minus that of the lower ones (upper and lower: above
    and below the lips' centre in the topology's template), and the same for the vertices of the
    central third of the mouth's width only (the part that opens most). Works for any topology
    with ``lip_idx``. The mouth's width is left out: rounded vowels narrow it while the envelope
    rises, so its sign against loudness depends on the words."""
    lips = topology.lip_idx
    template = topology.template[lips]
    centre_x, centre_y = template[:, 0].mean(), template[:, 1].mean()
    third = np.ptp(template[:, 0]) / 6
    upper, lower = template[:, 1] > centre_y, template[:, 1] <= centre_y
    central = np.abs(template[:, 0] - centre_x) < third
    y = mesh[:, lips, 1].astype(np.float64)
    height = max(float(np.ptp(template[:, 1])), 1e-9)
    return np.stack([y[:, upper].mean(axis=1) - y[:, lower].mean(axis=1),
                     y[:, upper & central].mean(axis=1) - y[:, lower & central].mean(axis=1)]) / height


def _frames(audio: np.ndarray) -> np.ndarray:
    n_frames = len(audio) // SAMPLES_PER_FRAME
    return pcm_to_float(audio[:n_frames * SAMPLES_PER_FRAME]).astype(np.float64).reshape(n_frames, SAMPLES_PER_FRAME)


# The speech band: a 4th-order Butterworth band-pass of 300-3000 Hz at 16 kHz as second-order
# sections (b0, b1, b2, a0, a1, a2), scipy.signal.butter(4, [300, 3000], btype="bandpass",
# fs=16000, output="sos") written out (a test checks it): importing scipy.signal would cost every
# build worker 0.5 s.
SPEECH_BAND = np.array([
    [0.027137395503100036, 0.05427479100620007, 0.027137395503100036, 1.0, -0.5831986411470919, 0.13724519667169216],
    [1.0, 2.0, 1.0, 1.0, -0.6144336329880901, 0.5399427570681308],
    [1.0, -2.0, 1.0, 1.0, -1.7652172334207668, 0.782321888334734],
    [1.0, -2.0, 1.0, 1.0, -1.9110009377791317, 0.9248652140321268]])
EDGE_SAMPLES = 27  # odd reflection at each end, as sosfiltfilt pads for these four sections
FFT_BLOCK = 16384  # samples per FFT of the overlap-save filtering (:func:`speech_band`)
BLOCK_MARGIN = 1024  # samples on each side of a block's output, more than the response's reach (710 to 1e-12)


@functools.cache
def band_power_response() -> np.ndarray:
    """``|H|^2`` of :data:`SPEECH_BAND` at the ``FFT_BLOCK // 2 + 1`` frequencies of an rfft of
    :data:`FFT_BLOCK` samples: the response of filtering forward and backward (zero phase)."""
    z = np.exp(-2j * np.pi * np.arange(FFT_BLOCK // 2 + 1) / FFT_BLOCK)  # z^-1 on the unit circle
    response = np.ones(len(z), dtype=complex)
    for b0, b1, b2, a0, a1, a2 in SPEECH_BAND:
        response *= (b0 + b1 * z + b2 * z * z) / (a0 + a1 * z + a2 * z * z)
    return np.abs(response) ** 2


def speech_band(x: np.ndarray) -> np.ndarray:
    """``x`` filtered forward and backward by :data:`SPEECH_BAND`, as scipy's ``sosfiltfilt``
    does, computed in the frequency domain. Like it, the signal is first extended by
    :data:`EDGE_SAMPLES` of odd reflection at each end; zeros beyond let the response die out.
    Overlap-save: blocks of :data:`FFT_BLOCK` samples, each keeping the output that lies
    :data:`BLOCK_MARGIN` samples from its ends, so the cost grows linearly with the length and
    one response serves every clip. Away from the ends the result is sosfiltfilt's to float
    rounding; over the first and last 40 ms, which start from rest where sosfiltfilt starts from
    a steady state, they differ slightly (tested)."""
    pad = EDGE_SAMPLES
    if len(x) <= pad:
        raise ValueError(f"speech_band needs more than {pad} samples (got {len(x)})")
    extended = np.concatenate([2 * x[0] - x[pad:0:-1], x, 2 * x[-1] - x[-2:-pad - 2:-1]])
    step = FFT_BLOCK - 2 * BLOCK_MARGIN
    n_blocks = -(-len(extended) // step)
    padded = np.zeros(n_blocks * step + 2 * BLOCK_MARGIN)
    padded[BLOCK_MARGIN:BLOCK_MARGIN + len(extended)] = extended
    response = band_power_response()
    filtered = np.empty(n_blocks * step)
    for block in range(n_blocks):  # one block at a time: small arrays, no fresh pages per call
        start = block * step
        spectrum = np.fft.rfft(padded[start:start + FFT_BLOCK])
        filtered[start:start + step] = np.fft.irfft(spectrum * response, FFT_BLOCK)[BLOCK_MARGIN:BLOCK_MARGIN + step]
    return filtered[pad:pad + len(x)]


def loudness(audio: np.ndarray) -> np.ndarray:
    """Per 25 fps frame, log RMS of its 640 samples in the speech band (int16 or float audio),
    floored at 40 dB below the clip's 95th percentile so that silence and padding are flat."""
    frames = _frames(audio)
    band = speech_band(frames.reshape(-1)).reshape(frames.shape)
    rms = np.sqrt((band ** 2).mean(axis=1))
    floor = 0.01 * np.percentile(rms, 95) if len(rms) else 0.0
    return np.log(rms + max(floor, 1e-6))


def voiced_fraction(audio: np.ndarray) -> float:
    """Fraction of frames whose normalised autocorrelation has a peak of 0.5 or more at a pitch
    period of 2.5-14 ms (70-400 Hz) and whose loudness is within 30 dB of the clip's 95th
    percentile: speech has many such frames, noise and silence almost none."""
    frames = _frames(audio)
    if len(frames) == 0:
        return 0.0
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = (frames ** 2).sum(axis=1)
    loud = energy >= np.percentile(energy, 95) * 1e-3
    spectrum = np.fft.rfft(frames, n=2 * SAMPLES_PER_FRAME, axis=1)
    autocorrelation = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :SAMPLES_PER_FRAME]
    periods = slice(SAMPLE_RATE // 400, SAMPLE_RATE // 70 + 1)
    peak = autocorrelation[:, periods].max(axis=1) / np.maximum(autocorrelation[:, 0], 1e-12)
    return float(np.mean((peak >= 0.5) & loud & (energy > 0)))


def high_pass(x: np.ndarray, width: int = HIGH_PASS_FRAMES) -> np.ndarray:
    """``x`` minus its centred moving average over ``width`` samples (edges padded with the edge
    value), along the last axis."""
    pad = [(0, 0)] * (x.ndim - 1) + [(width // 2, width - 1 - width // 2)]
    padded = np.pad(x, pad, mode="edge")
    kernel = np.ones(width) / width
    smooth = np.apply_along_axis(lambda row: np.convolve(row, kernel, "valid"), -1, padded)
    return x - smooth


def window_curves(mouth: np.ndarray, sound: np.ndarray, lags: np.ndarray, rules: SyncRules) -> np.ndarray:
    """(windows, measures, lags) Pearson correlations of each mouth measure (M, T) over a window
    with ``sound`` (T,) moved by each lag (audio frame ``t + lag`` against mouth frame ``t``,
    indices wrapping around the clip). Windows start at ``max_lag`` and end ``max_lag`` before the
    end, so that lags up to ``max_lag`` never wrap. A constant window gives 0."""
    n, width = mouth.shape[1], rules.window
    starts = np.arange(rules.max_lag, n - rules.max_lag - width + 1, rules.hop)
    index = starts[:, None] + np.arange(width)[None]                                      # (W, width)
    visual = mouth[:, index].transpose(1, 0, 2)                                            # (W, M, width)
    heard = sound[(index[:, None, :] + lags[None, :, None]) % n]                           # (W, L, width)
    visual = visual - visual.mean(axis=-1, keepdims=True)
    heard = heard - heard.mean(axis=-1, keepdims=True)
    products = np.einsum("wmt,wlt->wml", visual, heard)
    norms = np.sqrt((visual ** 2).sum(-1)[:, :, None] * (heard ** 2).sum(-1)[:, None, :])
    return np.where(norms > 1e-12, products / np.maximum(norms, 1e-12), 0.0)


def correlation_curve(mouth: np.ndarray, sound: np.ndarray, lags: np.ndarray,
                      rules: SyncRules) -> tuple[np.ndarray, np.ndarray]:
    """The curve over ``lags`` averaged over windows and measures, and each window's peak lag."""
    per_window = window_curves(mouth, sound, lags, rules).mean(axis=1)
    return per_window.mean(axis=0), lags[np.argmax(per_window, axis=1)]


def far_lags(n: int, rules: SyncRules) -> np.ndarray:
    """The lags of chance alignments: every circular lag more than ``2 * max_lag`` from 0, or
    ``max_chance_lags`` of them evenly spread on long clips (bounded memory and time)."""
    lags = np.arange(2 * rules.max_lag + 1, n - 2 * rules.max_lag)
    if len(lags) > rules.max_chance_lags:
        lags = lags[np.linspace(0, len(lags) - 1, rules.max_chance_lags).round().astype(int)]
    return lags


def _abstain(reason: Abstain, best: int = 0, z: float = 0.0, margin: float = 0.0, agreement: float = 0.0,
             correlations: np.ndarray | None = None) -> OffsetEstimate:
    return OffsetEstimate(None, reason.value, best, z, margin, agreement,
                          np.zeros(0) if correlations is None else correlations)


def estimate_offset(mesh: np.ndarray, audio: np.ndarray, topology: Topology,
                    rules: SyncRules = SyncRules()) -> OffsetEstimate:
    """The offset of the audio against the mouth of one clip, or None and a reason (see the
    module's docstring for the method and the tests it must pass)."""
    n = min(len(mesh), len(audio) // SAMPLES_PER_FRAME)
    if n < rules.window + 2 * rules.max_lag or len(far_lags(n, rules)) < rules.min_chance_lags:
        return _abstain(Abstain.TOO_SHORT)
    clip_audio = audio[:n * SAMPLES_PER_FRAME]
    envelope = loudness(clip_audio)
    modulation = float(np.std(high_pass(envelope)))
    if voiced_fraction(clip_audio) < rules.min_voiced or modulation < rules.min_modulation:
        return _abstain(Abstain.NOT_SPEECH)
    measures = lip_measures(mesh[:n], topology)
    if float(np.std(measures[0])) < rules.min_mouth_motion:
        return _abstain(Abstain.STILL_MOUTH)
    mouth, sound = high_pass(measures), high_pass(envelope)
    searched = np.arange(-rules.max_lag, rules.max_lag + 1)
    curve, window_peaks = correlation_curve(mouth, sound, searched, rules)
    best = int(np.argmax(curve))
    best_lag = int(searched[best])
    chance = correlation_curve(mouth, sound, far_lags(n, rules), rules)[0]
    spread = max(float(chance.std()), 1e-6)
    z = float((curve[best] - chance.mean()) / spread)
    beaten = float(curve[best] - max(chance.max(), curve[np.abs(searched - best_lag) > 2].max())) / spread
    agreement = float(np.mean(np.abs(window_peaks - best_lag) <= 1))
    verdict = (Abstain.WEAK if z < rules.min_z else Abstain.AMBIGUOUS if beaten < rules.min_margin
               else Abstain.DISAGREE if agreement < rules.min_agreement else None)
    if verdict is not None:
        return _abstain(verdict, best_lag, z, beaten, agreement, curve)
    return OffsetEstimate(best_lag, None, best_lag, z, beaten, agreement, curve)
