"""Frame timing and audio alignment of the ingest, on videos generated here with known content."""

from fractions import Fraction

import numpy as np
import pytest
from conftest import write_video

from voxmesh.pipelines.ingest.audio import load_audio
from voxmesh.pipelines.ingest.frames import iter_frames
from voxmesh.pipelines.ingest.probe import MAX_STREAM_GAP_SECONDS, MediaError, probe
from voxmesh.schemas import Reason

BITS = 8


def numbered_frames(n: int, size: int = 64) -> np.ndarray:
    """Frame k shows k in binary as 8 vertical black/white bars."""
    frames = np.zeros((n, size, size, 3), np.uint8)
    for k in range(n):
        for bit in range(BITS):
            if k >> bit & 1:
                frames[k, :, bit * size // BITS:(bit + 1) * size // BITS] = 255
    return frames


def read_numbers(frames: np.ndarray) -> list[int]:
    size = frames.shape[2]
    bars = frames[:, :, :, 0].reshape(len(frames), -1, BITS, size // BITS).mean(axis=(1, 3)) > 127
    return [int(sum(1 << b for b in range(BITS) if row[b])) for row in bars]


def decode_all(path: str, chunk_size: int = 7) -> np.ndarray:
    chunks = [chunk.copy() for chunk in iter_frames(path, chunk_size=chunk_size)]  # chunks share a buffer
    assert all(len(c) <= chunk_size for c in chunks)
    return np.concatenate(chunks)


def test_30fps_source_gives_the_nearest_frame_at_each_25fps_tick(tmp_path):
    path = str(tmp_path / "thirty.mp4")
    write_video(path, numbered_frames(60), fps=30)
    numbers = read_numbers(decode_all(path))
    assert len(numbers) == 50  # 2.0 s at 25 fps
    assert numbers == [round(i * 30 / 25) for i in range(50)]


def test_variable_frame_rate_source_is_sampled_by_timestamp(tmp_path):
    rng = np.random.default_rng(3)
    times_ms = np.cumsum(rng.integers(15, 70, 80))
    times_ms -= times_ms[0]
    path = str(tmp_path / "vfr.mkv")
    write_video(path, numbered_frames(80), fps=25, pts=[int(t) for t in times_ms], time_base=Fraction(1, 1000))
    numbers = read_numbers(decode_all(path))
    times = times_ms / 1000.0
    for i, number in enumerate(numbers):
        if i / 25 > times[-1]:
            assert number == 79
            continue
        distance = np.abs(times - i / 25)
        assert number == int(np.flatnonzero(distance == distance.min())[0]), i
    assert abs(len(numbers) - (times[-1] * 25 + 1)) <= 2


@pytest.mark.parametrize("gap_s", [4.0, 60.0])
def test_a_jump_in_the_timestamps_repeats_a_frame_only_up_to_the_longest_gap_a_video_may_have(tmp_path, gap_s):
    """A pause of a few seconds is a still picture (its last frame repeats at each tick); a jump
    beyond MAX_STREAM_GAP_SECONDS is damage, and the input fails with a reason before any frame
    is repeated across it."""
    times_ms = [40 * k for k in range(25)] + [int(960 + gap_s * 1000) + 40 * k for k in range(25)]
    path = str(tmp_path / "jump.mkv")
    write_video(path, numbered_frames(50), fps=25, pts=times_ms, time_base=Fraction(1, 1000))
    if gap_s <= MAX_STREAM_GAP_SECONDS:
        numbers = read_numbers(decode_all(path))
        assert len(numbers) == 50 + round(gap_s * 25) - 1
        assert numbers[:25] == list(range(25)) and numbers[-25:] == list(range(25, 50))
        return
    with pytest.raises(MediaError) as raised:
        decode_all(path)
    assert raised.value.reason == Reason.DECODE_ERROR
    assert raised.value.detail.startswith(path) and "jump by 60.0 s after 0.96 s" in raised.value.detail


def test_audio_that_starts_long_after_the_picture_is_an_offset_failure_not_minutes_of_silence(tmp_path):
    import av
    path = str(tmp_path / "late_audio.mkv")
    with av.open(path, "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        sound = container.add_stream("aac", rate=16000, layout="mono")
        for image in numbered_frames(50):
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode())
        sound.codec_context.time_base = Fraction(1, 16000)
        late = 16000 * 600  # ten minutes after the first frame
        for packet_start in range(0, 16000, 1024):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
            frame.sample_rate, frame.pts = 16000, late + packet_start
            container.mux(sound.encode(frame))
        container.mux(sound.encode())
    with pytest.raises(MediaError) as raised:
        load_audio(path)
    assert raised.value.reason == Reason.AV_OFFSET and "the audio starts 600." in raised.value.detail


def test_a_speech_file_on_its_own_clock_starts_at_its_first_sample_however_late_its_timestamps(tmp_path):
    """generate --audio reads a speech file (a cut .m4a, a stream segment) whose first timestamp may
    be anything: no silence before it, and no offset failure."""
    import av
    path = str(tmp_path / "late.mka")
    with av.open(path, "w") as container:
        sound = container.add_stream("aac", rate=16000, layout="mono")
        sound.codec_context.time_base = Fraction(1, 16000)
        for start in range(0, 32000, 1024):
            frame = av.AudioFrame.from_ndarray(np.full((1, 1024), 0.3, np.float32), format="flt", layout="mono")
            frame.sample_rate, frame.pts = 16000, 16000 * 20 + start  # 20 s in
            container.mux(sound.encode(frame))
        container.mux(sound.encode())
    audio = load_audio(path, own_clock=True)
    assert audio.offset == 0 and abs(len(audio.samples) - 32768) <= 2048  # about 2 s, not 22
    assert np.abs(audio.samples[1000:4000]).mean() > 0.1  # the tone from the start, not padded silence


def test_audio_is_mono_16k_and_a_click_lands_on_its_sample(tmp_path):
    rate = 44100
    audio = np.zeros(rate * 2, np.float32)
    click_time = 1.3
    audio[int(click_time * rate)] = 0.9
    path = str(tmp_path / "click.mp4")
    write_video(path, numbered_frames(50), fps=25, audio=audio, sample_rate=rate)
    decoded = load_audio(path)
    assert decoded.samples.dtype == np.float32 and decoded.samples.ndim == 1
    peak = int(np.argmax(np.abs(decoded.samples)))
    # AAC adds a priming delay that the container's start offset compensates; allow one video frame
    assert abs(peak - click_time * 16000) <= 640, (peak, decoded.offset)


@pytest.mark.parametrize("content, reason", [(b"", Reason.NOT_A_VIDEO), (b"\x00garbage" * 500, Reason.NOT_A_VIDEO)])
def test_unreadable_files_raise_media_errors_with_a_reason(tmp_path, content, reason):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(MediaError) as raised:
        probe(str(path))
    assert raised.value.reason == reason and str(path) in raised.value.detail


def test_probe_reports_streams(tmp_path):
    path = str(tmp_path / "silent.mp4")
    write_video(path, numbered_frames(30), fps=30)
    info = probe(path)
    assert (info.width, info.height, info.audio_sample_rate) == (64, 64, 0)
    assert info.average_fps == pytest.approx(30)
    with pytest.raises(MediaError) as raised:
        load_audio(path)
    assert raised.value.reason == Reason.NO_AUDIO_STREAM


def yuv_frame(rgb: np.ndarray, colorspace: int = 2, color_range: int = 0):
    import av
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    frame.colorspace, frame.color_range = colorspace, color_range
    return frame


def test_bt601_frames_are_converted_by_opencv_within_a_few_levels_of_swscale_and_others_by_swscale():
    from skimage import data

    from voxmesh.pipelines.ingest.frames import to_rgb
    image = np.ascontiguousarray(data.astronaut()[:224, :224])
    for colorspace, color_range in [(2, 0), (5, 1), (6, 0)]:  # untagged, BT470BG + MPEG, SMPTE170M
        frame = yuv_frame(image, colorspace, color_range)
        fast, reference = to_rgb(frame).astype(int), frame.to_ndarray(format="rgb24").astype(int)
        assert fast.shape == (224, 224, 3) and not np.array_equal(fast, reference)  # OpenCV's path was taken
        assert np.abs(fast - reference).mean() < 1.5 and np.percentile(np.abs(fast - reference), 99) <= 3
    for colorspace, color_range in [(1, 0), (2, 2)]:  # BT.709, full range: swscale, exactly
        frame = yuv_frame(image, colorspace, color_range)
        assert np.array_equal(to_rgb(frame), frame.to_ndarray(format="rgb24"))
    odd = yuv_frame(np.ascontiguousarray(data.astronaut()[:223, :221]))
    assert np.array_equal(to_rgb(odd), odd.to_ndarray(format="rgb24")) and to_rgb(odd).shape == (223, 221, 3)
