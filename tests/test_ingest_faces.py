"""Ingest on generated footage with known faces, cuts, rotation and broken streams (issue: media
ingest that survives real footage)."""

import os

import av
import cv2
import numpy as np
import pytest
from conftest import write_video
from skimage import data
from test_media import numbered_frames

from voxmesh.pipelines.ingest.audio import load_audio
from voxmesh.pipelines.ingest.clips import ClipRules
from voxmesh.pipelines.ingest.faces import FaceDetector, FacePass, TrackRules, build_tracks, crop, grey_thumbnail
from voxmesh.pipelines.ingest.frames import I420Frame, iter_decoded, iter_frames
from voxmesh.pipelines.ingest.item import InputItem
from voxmesh.pipelines.ingest.probe import probe
from voxmesh.pipelines.ingest.process import process_input
from voxmesh.schemas import Reason

FACE = data.astronaut()[0:256, 96:352]  # a real face, 256 x 256
CLOSE_UP = data.astronaut()[38:204, 143:309]  # the same face cropped close: its box is 0.7 of the side


def speechy_audio(seconds: float, seed: int = 0) -> np.ndarray:
    from voxmesh.pipelines.demo import speech_like
    return speech_like(seconds, seed)


def run(models, path: str, **rules):
    backend, detector = models
    item = InputItem(path, "spk", "vid", "0")
    return process_input(item, "train", backend, detector, ClipRules(**rules))


def decoded(path: str) -> np.ndarray:
    return np.concatenate([c.copy() for c in iter_frames(path)])


def test_two_comparable_faces_are_never_attributed_to_one_track(models, tmp_path):
    frames = np.repeat(np.concatenate([FACE, FACE[:, ::-1]], axis=1)[None], 75, axis=0)
    path = str(tmp_path / "two.mp4")
    write_video(path, frames, audio=speechy_audio(3))
    result = run(models, path)
    assert result.samples == [] and [f.reason for f in result.failures] == ["multiple_faces"]


@pytest.mark.parametrize("enters, last_usable", [(77, 75), (97, 95)])
def test_a_second_face_entering_between_two_looks_makes_those_frames_unusable(models, tmp_path, enters, last_usable):
    """Looks at every 5th frame: a second face entering at frame 77 is first seen by the look at 80,
    and frames 76-79 (tracked, not looked at) must not be used either; entering at 97, after the
    video's last look (95), it is seen by one more look at the last frame (99)."""
    canvas = np.full((100, 384, 768, 3), int(FACE.mean()), np.uint8)
    canvas[:, 64:320, 96:352] = FACE
    canvas[enters:, 64:320, 416:672] = FACE[:, ::-1]  # a second real face, as large as the first
    path = str(tmp_path / "enters.mp4")
    write_video(path, canvas, audio=speechy_audio(4))
    seen = FacePass.run(iter_frames(path), models[1], TrackRules())
    faces_at_looks = [len(seen.boxes[t]) for t in range(0, 100, 5)]
    assert seen.cuts == set() and faces_at_looks == [1] * (enters // 5 + 1) + [2] * (19 - enters // 5)
    result = run(models, path)
    assert [(s.meta.start_time, s.meta.n_frames) for s in result.samples] == [(0.0, last_usable + 1)]


class RecordingDetector(FaceDetector):
    """The real detector, recording which model each look used (True: short range)."""

    def __init__(self):
        super().__init__()
        self.short_range: list[bool] = []

    def detect(self, frame, short_range=False):
        self.short_range.append(short_range)
        return super().detect(frame, short_range)


@pytest.fixture
def detector():
    recording = RecordingDetector()
    yield recording
    recording.close()


def test_a_second_face_entering_a_close_up_is_seen_by_the_short_range_looks(models, detector, tmp_path):
    """Two close-up faces side by side (each box a third of the frame's side): the first look is
    full range and the shot's later looks short range, which still see the second face entering
    at frame 77 from the look at 80 on; frames 76-79 are not used either. (The faces fill the top
    half of a square frame, so that the entrance is not a shot cut.)"""
    side = CLOSE_UP.shape[0]
    canvas = np.full((100, 2 * side, 2 * side, 3), int(CLOSE_UP.mean()), np.uint8)
    canvas[:, :side, :side] = CLOSE_UP
    canvas[77:, :side, side:] = CLOSE_UP[:, ::-1]
    path = str(tmp_path / "close.mp4")
    write_video(path, canvas, audio=speechy_audio(4))
    seen = FacePass.run(iter_frames(path), detector, TrackRules())
    assert detector.short_range == [False, True] + [True] * 19
    assert seen.cuts == set() and [len(seen.boxes[t]) for t in range(0, 100, 5)] == [1] * 16 + [2] * 4
    result = run((models[0], detector), path)
    assert [(s.meta.start_time, s.meta.n_frames) for s in result.samples] == [(0.0, 76)]


def test_a_face_that_shrinks_without_a_cut_is_looked_for_with_the_full_range_model_again(models, detector, tmp_path):
    """A close-up that zooms out smoothly to a face a tenth of the frame (no cut): once a
    short-range look sees less than 0.8 of the opening size, that look is redone full range and
    the shot's later looks stay full range; the face is tracked throughout. With
    ``short_range_face=0`` every look is full range."""
    import cv2
    canvas = np.full((125, 360, 360, 3), int(FACE.mean()), np.uint8)
    for t in range(125):
        size = int(round(360 * (1 - 0.75 * min(t, 100) / 100)))  # 360 px, shrinking to 90 px
        canvas[t, (360 - size) // 2:(360 + size) // 2, (360 - size) // 2:(360 + size) // 2] = cv2.resize(
            FACE, (size, size), interpolation=cv2.INTER_AREA)
    path = str(tmp_path / "zoom.mp4")
    write_video(path, canvas, audio=speechy_audio(5))
    seen = FacePass.run(iter_frames(path), detector, TrackRules())
    assert seen.cuts == set() and all(len(seen.boxes[t]) == 1 for t in range(0, 125, 5))
    first_full = detector.short_range.index(False, 2)
    assert detector.short_range[:2] == [False, True] and all(detector.short_range[2:first_full])
    assert not any(detector.short_range[first_full:]) and 3 < first_full < 20
    detector.short_range = []
    FacePass.run(iter_frames(path), detector, TrackRules(short_range_face=0))
    assert not any(detector.short_range)


def test_a_face_that_leaves_the_frame_ends_its_clip(models, tmp_path):
    canvas = np.full((125, 256, 512, 3), 40, np.uint8)
    for t in range(125):
        x = 64 if t < 75 else 64 + (t - 75) * 12  # still for 3 s, then slides out to the right
        visible = FACE[:, :max(0, min(256, 512 - x))]
        canvas[t, :, x:x + visible.shape[1]] = visible
    path = str(tmp_path / "leaves.mp4")
    write_video(path, canvas, audio=speechy_audio(5))
    result = run(models, path)
    assert len(result.samples) == 1
    meta = result.samples[0].meta
    assert meta.start_time == 0 and 2.9 <= meta.end_time <= 4.4, meta.end_time


def test_a_hard_cut_between_two_real_clips_splits_the_tracks(models, media_dir, tmp_path):
    import cv2
    first = decoded(os.path.join(media_dir, "hdtf_aoc_512_25fps.mp4"))[:103]
    second = decoded(os.path.join(media_dir, "retalking2_844_25fps.mp4"))[:97]
    second = np.stack([cv2.resize(f, (512, 512), interpolation=cv2.INTER_AREA) for f in second])
    audio = np.concatenate([load_audio(os.path.join(media_dir, name)).samples[:n * 640]
                            for name, n in (("hdtf_aoc_512_25fps.mp4", 103), ("retalking2_844_25fps.mp4", 97))])
    path = str(tmp_path / "cut.mp4")
    write_video(path, np.concatenate([first, second]), audio=audio)

    backend, detector = models
    seen = FacePass.run(iter_frames(path), detector, TrackRules())
    assert seen.cuts == {103}
    # detection on every 5th frame of each shot, counted from the shot's first frame
    looked_at = [t for t, boxes in enumerate(seen.boxes) if boxes is not None]
    assert looked_at == list(range(0, 103, 5)) + list(range(103, 200, 5))
    tracks, _ = build_tracks(seen, TrackRules())
    assert [(t.start, t.end) for t in tracks] == [(0, 103), (103, 200)]
    result = run(models, path)
    assert [(s.meta.track, s.meta.start_time, s.meta.end_time) for s in result.samples] == [(0, 0.0, 4.12),
                                                                                            (1, 4.12, 8.0)]


def test_no_false_cuts_in_the_real_clips(models, media_dir):
    for name in ("hdtf_aoc_512_25fps.mp4", "retalking2_844_25fps.mp4", "retalking4_700_30fps.mp4"):
        seen = FacePass.run(iter_frames(os.path.join(media_dir, name)), models[1], TrackRules())
        tracks, _ = build_tracks(seen, TrackRules())
        assert seen.cuts == set() and len(tracks) == 1, name


def test_display_rotation_is_applied(tmp_path):
    import av
    original = numbered_frames(10)[:, :, :48]  # 64 high, 48 wide
    stored = np.rot90(original, k=-1, axes=(1, 2))  # what the camera wrote: turned clockwise
    path = str(tmp_path / "rotated.mp4")
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = stored.shape[2], stored.shape[1], "yuv420p"
        stream.set_display_rotation(90)  # players turn it back counter-clockwise
        for image in stored:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")))
        container.mux(stream.encode())
    frames = decoded(path)
    assert probe(path).rotation == 90
    assert frames.shape[1:3] == (64, 48)
    assert np.abs(frames.astype(int) - original.astype(int)).mean() < 10


def test_audio_shorter_than_video_limits_the_clips(models, media_dir, tmp_path):
    frames = decoded(os.path.join(media_dir, "hdtf_aoc_512_25fps.mp4"))[:125]
    audio = load_audio(os.path.join(media_dir, "hdtf_aoc_512_25fps.mp4")).samples[:16000 * 3]
    path = str(tmp_path / "short_audio.mp4")
    write_video(path, frames, audio=audio)
    result = run(models, path)
    assert len(result.samples) == 1
    assert result.samples[0].meta.n_frames <= 75 and result.samples[0].meta.n_frames >= 70


@pytest.mark.parametrize("index_first", [False, True])
def test_a_file_truncated_halfway_gives_its_decodable_part_or_a_reason(models, media_dir, tmp_path, index_first):
    """With the mp4 index at the end (the default) half a file is unreadable; with it first
    (faststart) the first half still decodes and gives a shorter clip."""
    source = os.path.join(media_dir, "hdtf_aoc_512_25fps.mp4")
    full = str(tmp_path / "full.mp4")
    write_video(full, decoded(source), audio=load_audio(source).samples,
                container_options={"movflags": "faststart"} if index_first else None)
    with open(full, "rb") as f:
        content = f.read()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(content[:len(content) // 2])
    result = run(models, str(path))
    if index_first:
        assert len(result.samples) == 1 and 50 <= result.samples[0].meta.n_frames <= 150
    else:
        assert result.samples == [] and [f.reason for f in result.failures] == ["not_a_video"]


def test_clips_beyond_the_offset_bound_are_flagged_or_dropped(models, media_dir, tmp_path):
    source = os.path.join(media_dir, "hdtf_aoc_512_25fps.mp4")
    frames, audio = decoded(source), load_audio(source).samples
    path = str(tmp_path / "early_audio.mp4")
    write_video(path, frames, audio=audio[16000 * 10 // 25:])  # audio 10 frames early
    flagged = run(models, path)
    assert [s.meta.av_offset_ok for s in flagged.samples] == [False] and flagged.samples[0].meta.av_offset <= -8
    assert flagged.samples[0].meta.av_offset_confidence >= 4 and flagged.samples[0].meta.av_offset_reason is None
    dropped = run(models, path, drop_av_offset=True)
    assert dropped.samples == [] and [f.reason for f in dropped.failures] == ["av_offset"]
    offset, confidence = flagged.samples[0].meta.av_offset, flagged.samples[0].meta.av_offset_confidence
    assert f"{offset:+d} (confidence {confidence:.1f})" in dropped.failures[0].detail


def test_long_tracks_are_cut_into_equal_parts_and_gaps_are_bridged():
    box = np.array([[10.0, 10.0, 110.0, 110.0]])
    boxes = [box] * 30 + [np.zeros((0, 4))] * 3 + [box] * 12  # a 3-frame miss inside one face
    tracks, statuses = build_tracks(FacePass(boxes, set()), TrackRules(max_track_frames=20))
    assert [(t.start, t.end) for t in tracks] == [(0, 15), (15, 30), (30, 45)]
    assert statuses == [None] * 45
    np.testing.assert_allclose(tracks[2].box(31), box[0])


def test_tracks_hold_between_looks_and_unlooked_frames_take_the_last_look():
    face, two = np.array([[10.0, 10.0, 110.0, 110.0]]), np.array([[10.0, 10.0, 110.0, 110.0], [200, 10, 290, 100]])
    nothing = np.zeros((0, 4))

    def looks(*observed):  # one look, then four frames not looked at
        return [b for boxes in observed for b in (boxes, None, None, None, None)]

    # a face, a missed look (bridged), the face again, then two comparable faces, then no face
    seen = FacePass(looks(face, nothing, face, two, nothing), set())
    tracks, statuses = build_tracks(seen, TrackRules())
    assert [(t.start, t.end) for t in tracks] == [(0, 15)]
    assert statuses == [None] * 15 + [Reason.MULTIPLE_FACES] * 5 + [Reason.NO_FACE] * 5
    # a shot cut ends the track at the cut even between looks
    seen = FacePass(looks(face, face)[:7] + looks(face), {7})
    assert [(t.start, t.end) for t in build_tracks(seen, TrackRules())[0]] == [(0, 7), (7, 12)]


# boxes on a 64 x 60 frame whose crops lie inside it, reach over its left edge, over its bottom-right corner
CROP_BOXES = [(20.0, 15.0, 44.0, 40.0), (-8.5, 10.2, 16.3, 35.7), (45.4, 42.2, 70.9, 66.1)]


def coordinate_frame(blue: int, height: int = 60, width: int = 64) -> np.ndarray:
    """An RGB frame whose red and green are 4 times its x and y coordinates."""
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([4 * xs, 4 * ys, np.full_like(xs, blue)], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("box", CROP_BOXES, ids=["inside", "left_edge", "bottom_right_corner"])
def test_each_crop_pixel_holds_the_source_pixel_its_transform_names(box):
    """The crop and its transform agree (landmarks are mapped back to the source by it): crop pixel
    (u, v) holds the frame at (k u + x0, k v + y0), black outside the frame. On a frame whose
    values are 4 times their own coordinates, bilinear sampling gives those back (to a quarter
    of a pixel), except in the crop's outermost half source pixel, which repeats the window's edge."""
    frame = coordinate_frame(blue=255)
    height, width = frame.shape[:2]
    rules = TrackRules()
    image, (k, x0, y0) = crop(frame, np.array(box), rules)
    assert image.shape == (rules.crop_size, rules.crop_size, 3)
    assert k * rules.crop_size == pytest.approx(rules.crop_scale * max(box[2] - box[0], box[3] - box[1]), abs=1)
    source_x = k * np.arange(rules.crop_size) + x0
    source_y = k * np.arange(rules.crop_size) + y0
    inside_x = (source_x >= 1) & (source_x <= width - 2)
    inside_y = (source_y >= 1) & (source_y <= height - 2)
    edge = int(np.ceil(0.5 / k))
    for mask in (inside_x, inside_y):
        mask[:edge] = mask[-edge:] = False
    assert inside_x.sum() > 100 and inside_y.sum() > 100
    sampled = image[np.ix_(inside_y, inside_x)].astype(float)
    assert np.abs(sampled[..., 0] - 4 * source_x[inside_x][None, :]).max() <= 1
    assert np.abs(sampled[..., 1] - 4 * source_y[inside_y][:, None]).max() <= 1
    assert (sampled[..., 2] == 255).all()
    outside_x, outside_y = (source_x < -1) | (source_x > width), (source_y < -1) | (source_y > height)
    assert (image[:, outside_x] == 0).all() and (image[outside_y] == 0).all()
    # the black check is not vacuous: the crops of the edge boxes do reach outside the frame
    assert (outside_x.any() or outside_y.any()) == (box[0] < 0 or box[2] > width or box[3] > height)


@pytest.mark.parametrize("box", CROP_BOXES, ids=["inside", "left_edge", "bottom_right_corner"])
def test_a_crop_from_i420_planes_is_the_crop_of_their_rgb(box):
    """Ingest keeps decoded 4:2:0 frames as their planes and converts only each crop, resized
    first: the crop (and transform) of the RGB frame, to the rounding of resizing before
    converting. On a frame whose red and green are 4 times its coordinates the two agree to 0.8
    levels on average; the luma window one source pixel off gives 1.3, the chroma window one
    chroma pixel off 2.4-3.4."""
    frame = I420Frame(cv2.cvtColor(coordinate_frame(blue=128), cv2.COLOR_RGB2YUV_I420))
    from_planes, transform = crop(frame, np.array(box), TrackRules())
    from_rgb, same_transform = crop(frame.rgb(), np.array(box), TrackRules())
    difference = np.abs(from_planes.astype(int) - from_rgb.astype(int))
    assert transform == same_transform and difference.mean() < 1.0


def test_decoded_video_arrives_as_planes_whose_crops_and_thumbnails_match_its_rgb(tmp_path):
    """The frames ingest decodes are I420 planes (VoxCeleb2's format): their RGB is the RGB frames
    that iter_frames gives and within a few levels of FFmpeg's own conversion, their crops match
    the RGB's crops to a few levels on a real picture and their shot-cut thumbnails (from luma) to
    2 levels."""
    path = str(tmp_path / "face.mp4")
    write_video(path, np.repeat(np.ascontiguousarray(data.astronaut()[:240, :320])[None], 10, axis=0),
                audio=speechy_audio(0.4))
    decoded_frames = list(iter_decoded(path))
    assert len(decoded_frames) == 10 and all(isinstance(f, I420Frame) for f in decoded_frames)
    frame = decoded_frames[0]
    whole = frame.rgb()
    assert np.array_equal(whole, decoded(path)[0])
    with av.open(path) as container:
        by_ffmpeg = next(container.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    assert np.abs(whole - by_ffmpeg).mean() < 1.5 and np.percentile(np.abs(whole - by_ffmpeg), 99) <= 3
    for box in [(100.0, 20.0, 220.0, 150.0), (-30.0, 40.5, 90.2, 170.0), (250.3, 150.7, 340.0, 250.0)]:
        from_planes = crop(frame, np.array(box), TrackRules())[0].astype(int)
        difference = np.abs(from_planes - crop(whole, np.array(box), TrackRules())[0].astype(int))
        assert difference.mean() < 1.5 and np.percentile(difference, 99) <= 8
    assert np.abs(grey_thumbnail(frame) - grey_thumbnail(whole)).max() <= 2
