"""The offset bench's short mode on the real clips (audio moved -4, 0, +4 frames, re-encoded,
built with voxmesh's ingest), and abstention on real footage whose audio is not speech (issue:
audio-visual offsets that can be trusted)."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
import bench_sync  # noqa: E402

from voxmesh.pipelines.demo import mouth_openness, speech_like, talking_mesh
from voxmesh.pipelines.ingest.audio import load_audio
from voxmesh.pipelines.ingest.clips import ClipRules
from voxmesh.pipelines.ingest.frames import iter_frames
from voxmesh.pipelines.ingest.item import InputItem
from voxmesh.pipelines.ingest.process import process_input
from voxmesh.schemas import get_topology

# At least this many of the 9 built clips must carry an estimate: what the estimator reaches on
# these clips today (one source of three gives a consistent lag, see README "Audio-visual
# offsets"); the issue's goal of two thirds is not reached, and this floor keeps the check able
# to fail if the estimator falls silent.
MIN_REPORTED = 2


def test_shifted_real_clips_give_right_offsets_or_none_and_in_sync_clips_are_not_flagged(media_dir, tmp_path):
    rows = bench_sync.run(media_dir, bench_sync.SHORT_SHIFTS, str(tmp_path))
    summary = bench_sync.summary(rows)
    assert summary["clips"] == 9, bench_sync.table(rows)
    assert summary["reported"] >= MIN_REPORTED, bench_sync.table(rows)
    assert summary["right"] == summary["reported"], bench_sync.table(rows)
    assert summary["in_sync"] == 3 and summary["in_sync_flagged"] == 0, bench_sync.table(rows)
    assert all(r.reason for r in rows if r.offset is None) and all(r.reason is None for r in rows if r.offset is not None)


@pytest.mark.parametrize("kind", ["tone", "noise"])
def test_real_footage_with_audio_that_is_not_speech_gets_no_offset(models, media_dir, tmp_path, kind):
    source = os.path.join(media_dir, "hdtf_aoc_512_25fps.mp4")
    frames = np.concatenate([chunk.copy() for chunk in iter_frames(source)])[:125]
    n = len(frames) * 640
    rng = np.random.default_rng(0)
    audio = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / 16000) if kind == "tone"
             else 0.1 * rng.standard_normal(n)).astype(np.float32)
    path = str(tmp_path / f"{kind}.mp4")
    bench_sync.write_clip(path, frames, audio)
    backend, detector = models
    result = process_input(InputItem(path, "spk", "vid", kind), "train", backend, detector, ClipRules())
    assert len(result.samples) == 1, result.failures
    meta = result.samples[0].meta
    assert meta.av_offset is None and meta.av_offset_reason == "not_speech" and meta.av_offset_ok


def test_the_speech_of_another_recording_gets_no_offset(models, media_dir, tmp_path):
    """Real footage and real speech that were never together: no confident offset."""
    source = os.path.join(media_dir, "hdtf_aoc_512_25fps.mp4")
    frames = np.concatenate([chunk.copy() for chunk in iter_frames(source)])[:200]
    speech = load_audio(os.path.join(media_dir, "harvard_16k.wav"), 0.0).samples[:len(frames) * 640]
    path = str(tmp_path / "dubbed.mp4")
    bench_sync.write_clip(path, frames, speech)
    backend, detector = models
    result = process_input(InputItem(path, "spk", "vid", "dubbed"), "train", backend, detector, ClipRules())
    assert len(result.samples) == 1, result.failures
    meta = result.samples[0].meta
    assert meta.av_offset is None and meta.av_offset_ok and meta.av_offset_reason in {
        "weak_peak", "ambiguous_peak", "windows_disagree"}


@pytest.mark.parametrize("shift", [-8, 0, 8])
def test_the_lip_closure_check_finds_where_closed_lips_meet_quiet_speech(shift):
    """The bench's check of its sources, on generated speech and a mouth that opens with it: the
    quietest lag at the closed-lip frames is the audio's shift, and other lags are louder there."""
    topology = get_topology("mediapipe478")
    audio = speech_like(8.0, 3)
    mesh = talking_mesh(topology, 0.8 * mouth_openness(audio))
    moved = bench_sync.shifted_audio(audio, shift)[:len(audio)]
    moved = np.concatenate([moved, np.zeros(len(audio) - len(moved), np.float32)])
    lags = np.arange(-20, 21)
    curve = bench_sync.loudness_where_lips_close(mesh, moved, topology, lags)
    assert abs(lags[np.argmin(curve)] - shift) <= 1, curve.round(2)
    assert curve[lags == shift][0] < 0.5 * np.median(curve), curve.round(2)


def test_the_band_pass_bench_prints_both_timings_and_a_negligible_difference(monkeypatch, capsys):
    import bench_band_pass
    monkeypatch.setattr(sys, "argv", ["bench_band_pass.py", "--repeats", "1"])
    bench_band_pass.main()
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()[2:]]
    assert [row[0].strip() for row in rows] == [f"{s} s" for s in bench_band_pass.SECONDS]
    assert all(float(row[1]) > 0 and float(row[2]) > 0 and float(row[3]) < 1e-9 for row in rows)
