"""The script voxmesh replaces, as a researcher would write it (the baseline of bench_build.py).

Per video: OpenCV decode, the frame nearest each 25 fps tick, MediaPipe Face Mesh (one face,
tracking mode, refined landmarks) on every such frame, landmarks converted point by point, the
audio resampled to 16 kHz mono (PyAV), everything saved with ``np.savez``. No shot cuts, no second
face, no quality checks, no clips. One process per core, files dealt round-robin.

Usage: python bench/naive_script.py --out DIR [--workers N] VIDEO...
"""

from __future__ import annotations

import argparse
import multiprocessing
import os

import numpy as np


def landmarks_of_video(path: str) -> np.ndarray:
    """(T, 478, 3) normalised landmarks at 25 fps (NaN where no face was found)."""
    import cv2
    import mediapipe as mp
    capture = cv2.VideoCapture(path)
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    frames = []
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=True) as mesh:
        index = tick = 0
        while True:
            ok, image = capture.read()
            if not ok:
                break
            while tick / 25.0 <= index / fps:  # this frame is the one nearest the tick (source >= 25 fps)
                result = mesh.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
                if result.multi_face_landmarks:
                    frames.append([[p.x, p.y, p.z] for p in result.multi_face_landmarks[0].landmark])
                else:
                    frames.append(np.full((478, 3), np.nan).tolist())
                tick += 1
            index += 1
    capture.release()
    return np.array(frames, dtype=np.float32).reshape(-1, 478, 3)


def audio_16k(path: str) -> np.ndarray:
    import av
    with av.open(path) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
        chunks = [resampled.to_ndarray().ravel() for frame in container.decode(audio=0)
                  for resampled in resampler.resample(frame)]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


def process_files(job: tuple[list[str], str]) -> int:
    """One worker: its files in turn; returns the frames it processed."""
    paths, out = job
    n_frames = 0
    for k, path in enumerate(paths):
        landmarks = landmarks_of_video(path)
        np.savez(os.path.join(out, f"{os.getpid()}_{k}.npz"), landmarks=landmarks, audio=audio_16k(path))
        n_frames += len(landmarks)
    return n_frames


def run(paths: list[str], out: str, workers: int) -> int:
    """All ``paths`` over ``workers`` processes (file i to worker i mod workers); total frames."""
    os.makedirs(out, exist_ok=True)
    jobs = [(paths[w::workers], out) for w in range(workers)]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return sum(pool.map(process_files, jobs, chunksize=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("videos", nargs="+")
    args = parser.parse_args()
    print(run(args.videos, args.out, args.workers), "frames")


if __name__ == "__main__":
    main()
