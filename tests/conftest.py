import os
import subprocess
import sys

import numpy as np
import pytest

pytest_plugins = ["s3_server"]  # the s3_endpoint and bucket fixtures: a local S3-compatible server
MEDIA_ENV = "VOXMESH_TEST_MEDIA"
REAL_CLIPS = ("hdtf_aoc_512_25fps.mp4", "retalking2_844_25fps.mp4", "retalking4_700_30fps.mp4")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def run_bench():
    """``run_bench(NAME, *ARGS)``: run ``bench/NAME`` with ``ARGS`` (its short mode) in a fresh
    process and return the last line it prints; the test fails with its stderr if it fails."""
    def run(name: str, *args: str) -> str:
        done = subprocess.run([sys.executable, os.path.join(ROOT, "bench", name), *args], capture_output=True,
                              text=True, env={**os.environ, "PYTHONPATH": ROOT}, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip().splitlines()[-1]
    return run


@pytest.fixture(scope="session")
def media_dir() -> str:
    """The folder of real test media (``$VOXMESH_TEST_MEDIA``, default ``../shared/media``)."""
    default = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "media")
    folder = os.path.abspath(os.environ.get(MEDIA_ENV, default))
    missing = [name for name in REAL_CLIPS if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        pytest.skip(f"real test media not found in {folder} (missing {', '.join(missing)}); "
                    f"set {MEDIA_ENV} to the folder that holds them")
    return folder


def write_video(path: str, frames: np.ndarray, fps=25, audio: np.ndarray | None = None,
                sample_rate: int = 16000, pts: list[int] | None = None, time_base=None,
                container_options: dict | None = None) -> None:
    """Encode RGB ``frames`` (N, H, W, 3) as H.264 in ``path``, with optional mono float audio.

    ``pts`` with ``time_base`` give explicit presentation times (variable frame rate)."""
    from fractions import Fraction

    import av

    from voxmesh.pipelines.ingest.audio import encode_audio
    with av.open(path, "w", options=container_options or {}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if time_base is not None:
            stream.time_base = stream.codec_context.time_base = time_base
        sound = container.add_stream("aac", rate=sample_rate, layout="mono") if audio is not None else None
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], time_base or Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if sound is not None:
            encode_audio(container, sound, audio, sample_rate)



def synthetic_sample(speaker: str, clip: int, mesh: np.ndarray, audio: np.ndarray):
    """A train-split sample of ``speaker``'s clip ``clip`` with these meshes (T, 478, 3) and 16 kHz
    int16 ``audio`` (T * 640 samples), an identity pose and zero 2D landmarks."""
    from voxmesh.schemas import SampleMeta, make_key
    from voxmesh.schemas.sample import Sample
    n_frames = len(mesh)
    meta = SampleMeta(key=make_key(speaker, "vid", "00001", 0, clip), split="train", speaker=speaker, video="vid",
                      utterance="00001", track=0, clip=clip, source_uri=f"/data/{speaker}.mp4", start_time=0.0,
                      end_time=n_frames / 25, n_frames=n_frames, n_samples=len(audio), backend="test",
                      backend_version="1", topology="mediapipe478", confidence_mean=0.9, lip_motion=1.0, jitter=0.01,
                      av_offset=0, av_offset_confidence=0.3, av_offset_ok=True, audio_start_offset=0.0)
    return Sample(meta=meta, mesh=mesh.astype(np.float32), pose=np.tile(np.eye(4, dtype=np.float32), (n_frames, 1, 1)),
                  audio=audio, lmk2d=np.zeros((n_frames, mesh.shape[1], 2), np.float32))


def write_dataset(folder: str, samples: list) -> str:
    """One train shard of ``samples`` and the manifest: a dataset the training stage reads."""
    from voxmesh.schemas import SampleTarWriter, write_manifest
    with SampleTarWriter(folder, "train", 0, inputs=["x"]) as writer:
        for sample in samples:
            writer.write_members(sample.meta, sample.to_members())
        rows = writer.commit().samples
    write_manifest(rows, os.path.join(folder, "manifest.parquet"))
    return folder


@pytest.fixture(scope="session")
def deca_files(tmp_path_factory) -> tuple[str, str]:
    """A DECA checkpoint with random weights under the published names (deca_synthetic.py) and a
    synthetic FLAME model with DECA's sizes: (checkpoint path, model path)."""
    from deca_synthetic import random_checkpoint
    from flame_synthetic import synthetic_flame
    folder = tmp_path_factory.mktemp("deca")
    checkpoint, model = str(folder / "deca_model.tar"), str(folder / "flame.npz")
    random_checkpoint(checkpoint)
    np.savez(model, **synthetic_flame(n_shape=100, n_expression=50))
    return checkpoint, model


@pytest.fixture(scope="session")
def fan3d_weights(tmp_path_factory) -> dict[str, str]:
    """Random-weight fan3d checkpoints (see fan3d_synthetic.py): {"fan": path, "depth": path}."""
    from fan3d_synthetic import write_random_fan3d_weights
    return write_random_fan3d_weights(str(tmp_path_factory.mktemp("fan3d_weights")))


@pytest.fixture(scope="module")
def models():
    """The MediaPipe backend and the face detector, set up once per test module."""
    from voxmesh.pipelines.ingest.faces import FaceDetector
    from voxmesh.recon.mediapipe_mesh import MediaPipeFaceMesh
    backend, detector = MediaPipeFaceMesh(), FaceDetector()
    backend.setup()
    yield backend, detector
    backend.close()
    detector.close()
