"""The synthetic smoke input of ``voxmesh demo``: built and validated end to end with no download.

The input is made here: scikit-image's bundled photograph ``data.astronaut()`` (a real face)
whose mouth is warped open and shut by the loudness of a generated speech-like signal (a jittered
glottal pulse train through moving formant resonators, in syllables), muxed into mp4 files laid
out like VoxCeleb2 (``{speaker}/{video}/{utterance}.mp4``), plus one file that is not a video, to
show a failure record. It exercises every stage; it is not speech data.
"""

from __future__ import annotations

import os

import av
import numpy as np
from scipy import signal

from voxmesh.pipelines.ingest.audio import encode_audio
from voxmesh.schemas import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, Topology

DEMO_SECONDS = 6.0
UPPER_LIP_INNER, LOWER_LIP_INNER, MOUTH_LEFT, MOUTH_RIGHT = 13, 14, 61, 291


def speech_like(seconds: float, seed: int) -> np.ndarray:
    """A deterministic speech-like signal at 16 kHz in [-1, 1]: voiced syllables at about 4 Hz
    with pauses, pitch around 120-220 Hz, two formants that move from syllable to syllable."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f0 = rng.uniform(120, 220) * (1 + 0.05 * np.sin(2 * np.pi * 0.5 * t)) * (1 + 0.01 * rng.standard_normal(n))
    pulses = (np.diff(np.floor(np.cumsum(f0) / SAMPLE_RATE), prepend=0) > 0).astype(np.float64)
    envelope = np.zeros(n)
    start = 0.3
    while start < seconds - 0.4:
        length = rng.uniform(0.12, 0.3)
        bump = (t >= start) & (t < start + length)
        envelope[bump] = np.sin(np.pi * (t[bump] - start) / length) ** 2
        start += length + (rng.uniform(0.3, 0.7) if rng.random() < 0.2 else rng.uniform(0.03, 0.1))
    voiced = np.zeros(n)
    block = SAMPLE_RATE // 10
    for begin in range(0, n, block):
        f1, f2 = rng.uniform(300, 800), rng.uniform(900, 2200)
        segment = pulses[begin:begin + block]
        for formant in (f1, f2):
            b, a = signal.iirpeak(formant, Q=5, fs=SAMPLE_RATE)
            voiced[begin:begin + block] += signal.lfilter(b, a, segment)
    audio = voiced * envelope + 0.002 * rng.standard_normal(n)
    return (0.5 * audio / np.abs(audio).max()).astype(np.float32)


def mouth_openness(audio: np.ndarray) -> np.ndarray:
    """Per 25 fps frame, the RMS loudness of its 640 samples scaled to [0, 1]."""
    n_frames = len(audio) // SAMPLES_PER_FRAME
    rms = np.sqrt((audio[:n_frames * SAMPLES_PER_FRAME].reshape(n_frames, -1) ** 2).mean(axis=1))
    return np.clip(rms / np.percentile(rms, 95), 0, 1)


def talking_mesh(topology: Topology, opening: np.ndarray) -> np.ndarray:
    """(T, V, 3) meshes of ``topology``'s template whose lower lip (the lip vertices at or below
    the lips' mean height) drops by ``opening`` (T,), in template units: a generated mouth."""
    lips = topology.lip_idx
    lower = lips[topology.template[lips, 1] <= topology.template[lips, 1].mean()]
    mesh = np.repeat(topology.template[None].astype(np.float64), len(opening), axis=0)
    mesh[:, lower, 1] -= opening[:, None]
    return mesh


def find_mouth(image: np.ndarray) -> tuple[float, float, float]:
    """``(x_centre, y_lip_line, half_width)`` of the closed mouth in ``image``, from Face Mesh."""
    import mediapipe as mp
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as face_mesh:
        landmarks = face_mesh.process(image).multi_face_landmarks[0].landmark
    height, width = image.shape[:2]
    point = {i: (landmarks[i].x * width, landmarks[i].y * height)
             for i in (UPPER_LIP_INNER, LOWER_LIP_INNER, MOUTH_LEFT, MOUTH_RIGHT)}
    x_centre = (point[MOUTH_LEFT][0] + point[MOUTH_RIGHT][0]) / 2
    y_line = (point[UPPER_LIP_INNER][1] + point[LOWER_LIP_INNER][1]) / 2
    return x_centre, y_line, abs(point[MOUTH_RIGHT][0] - point[MOUTH_LEFT][0]) / 2


def open_mouth(image: np.ndarray, mouth: tuple[float, float, float], openness: float) -> np.ndarray:
    """Drop the lower lip and jaw by up to a third of the mouth width and darken the gap."""
    import cv2
    x_centre, y_line, half_width = mouth
    height, width = image.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    drop = openness * 0.6 * half_width
    across = np.clip(1 - ((xs - x_centre) / (1.3 * half_width)) ** 2, 0, None)
    below = np.clip(1 - (ys - y_line) / (4 * half_width), 0, 1) * (ys >= y_line)
    shift = drop * across * below
    warped = cv2.remap(image, xs, ys - shift, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    gap = (ys >= y_line) & (ys - shift < y_line)
    warped[gap] = (warped[gap] * 0.15 + np.array([60, 10, 15]) * 0.85).astype(np.uint8)
    return warped


def write_talking_video(path: str, image: np.ndarray, audio: np.ndarray) -> None:
    """Mux the photo, mouth driven by ``audio``, with ``audio`` into an H.264 + AAC mp4."""
    mouth = find_mouth(image)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with av.open(path, "w") as container:
        video = container.add_stream("libx264", rate=FPS, options={"crf": "20", "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = image.shape[1], image.shape[0], "yuv420p"
        video.codec_context.options = {"threads": "1"}  # single-threaded x264: same bytes every run
        sound = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        for openness in mouth_openness(audio):
            frame = av.VideoFrame.from_ndarray(open_mouth(image, mouth, float(openness)), format="rgb24")
            container.mux(video.encode(frame))
        container.mux(video.encode())
        encode_audio(container, sound, audio)


def make_demo_input(folder: str) -> list[str]:
    """Three talking videos of three 'speakers' (the photo, mirrored, and a cooler-toned copy) and
    one corrupt file, in VoxCeleb2's layout under ``folder``. Returns the paths written."""
    from skimage import data
    photo = data.astronaut()
    faces = {"id00001": photo, "id00002": np.ascontiguousarray(photo[:, ::-1]),
             "id00003": np.clip(photo * np.array([0.85, 0.95, 1.1]), 0, 255).astype(np.uint8)}
    paths = []
    for seed, (speaker, image) in enumerate(faces.items()):
        path = os.path.join(folder, speaker, "demo", "00001.mp4")
        write_talking_video(path, image, speech_like(DEMO_SECONDS, seed))
        paths.append(path)
    broken = os.path.join(folder, "id00004", "demo", "00001.mp4")
    os.makedirs(os.path.dirname(broken), exist_ok=True)
    with open(broken, "wb") as f:
        f.write(b"this is not a video\n" * 100)
    return paths + [broken]
