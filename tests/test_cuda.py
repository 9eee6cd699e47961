"""The CUDA paths, where torch sees a GPU (skipped elsewhere, CI included): every model trains on
CUDA with bfloat16 autocast, and its checkpoint generates on either device; the GPU backends
(DECA with bfloat16 autocast and TF32, the FLAME fitter, fan3d) give what they give on the CPU.
Each comparison prints its figure, so a run on a GPU machine shows how far the devices differ."""

import json
import os

import numpy as np
import pytest
import torch
from conftest import synthetic_sample, write_dataset

from voxmesh.cli import main
from voxmesh.models.checkpoint import load_checkpoint
from voxmesh.models.generation import MotionGenerator
from voxmesh.models.generators import Sampling
from voxmesh.pipelines.demo import mouth_openness, speech_like, talking_mesh
from voxmesh.schemas import float_to_pcm, get_topology

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch")

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "models", "configs")
STEPS = 80
KINDS = ["rvq", "vq", "probabilistic", "codetalker", "faceformer"]  # each generator's stage 1 before it


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> str:
    """Three speakers, two 6 s clips each: speech-like audio and a mouth that opens with its loudness."""
    topology = get_topology("mediapipe478")
    samples = []
    for s, speaker in enumerate("abc"):
        for clip in range(2):
            audio = speech_like(6.0, seed=10 * s + clip)
            samples.append(synthetic_sample(speaker, clip, talking_mesh(topology, 0.8 * mouth_openness(audio)),
                                            float_to_pcm(audio)))
    return write_dataset(str(tmp_path_factory.mktemp("cuda") / "dataset"), samples)


def train_on_cuda(kind: str, dataset: str, out: str, steps: int, *extra: str, **settings) -> None:
    """``voxmesh train`` of an example config on CUDA (bfloat16 autocast, the default)."""
    settings = {"data.dataset": dataset, "out": out, "train.steps": steps, "train.device": "cuda",
                "data.window": 32, "data.batch_size": 8, "train.log_every": 20, "train.warmup": 10, **settings}
    argv = ["train", "--config", os.path.join(CONFIGS, f"{kind}.toml"), *extra]
    for name, value in settings.items():
        argv += ["--set", f"{name}={value}"]
    assert main(argv) == 0, kind


@pytest.fixture(scope="module")
def runs(tmp_path_factory, dataset) -> dict[str, str]:
    """Every model trained on CUDA, stage 1 first."""
    folders: dict[str, str] = {}
    for kind in KINDS:
        stage1 = {"probabilistic": "rvq", "codetalker": "vq"}.get(kind)
        settings = {"tokenizer_checkpoint": os.path.join(folders[stage1], "last.pt")} if stage1 else {}
        folders[kind] = str(tmp_path_factory.mktemp(kind))
        train_on_cuda(kind, dataset, folders[kind], STEPS, **settings)
    return folders


@pytest.mark.parametrize("kind", KINDS)
def test_every_model_trains_on_cuda_and_its_loss_falls(runs, kind):
    checkpoint = load_checkpoint(os.path.join(runs[kind], "last.pt"))
    losses = np.array(checkpoint["losses"])
    print(f"{kind}: loss {losses[:10].mean():.4g} -> {losses[-10:].mean():.4g} in {STEPS} CUDA steps")
    assert len(losses) == STEPS and np.isfinite(losses).all()
    assert losses[-10:].mean() < losses[:10].mean()


def test_a_run_resumed_on_cuda_continues_the_same_loss_curve(runs, dataset, tmp_path):
    """Dropout and code restarts draw from the GPU's generator: its state is in the checkpoint.
    GPU kernels that add in parallel may round differently from run to run, hence a tolerance;
    without the GPU's state the largest difference was 2.6e-3 on an H100, with it 0."""
    settings = {"tokenizer_checkpoint": os.path.join(runs["rvq"], "last.pt"), "train.checkpoint_every": 15}
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    train_on_cuda("probabilistic", dataset, straight, 30, **settings)
    train_on_cuda("probabilistic", dataset, resumed, 15, **settings)
    train_on_cuda("probabilistic", dataset, resumed, 30, "--resume", **settings)
    expected, losses = (np.array(load_checkpoint(os.path.join(run, "last.pt"))["losses"]) for run in (straight, resumed))
    difference = float(np.abs(losses - expected).max() / np.abs(expected).min())
    print(f"resumed on CUDA: largest loss difference {difference:.2e} of the smallest loss")
    assert len(losses) == 30 and difference < 1e-4


@pytest.mark.parametrize("kind", ["probabilistic", "codetalker", "faceformer"])
def test_a_cuda_checkpoint_generates_on_either_device_alike(runs, kind):
    """Greedy decoding: the same seed gives the same bytes on CUDA twice, and CUDA's meshes are
    the CPU's up to float rounding (a rounding can flip a code, so the bound is on the mean)."""
    checkpoint, speech = os.path.join(runs[kind], "last.pt"), speech_like(3.0, seed=99)
    greedy = Sampling(temperature=0)
    on_cpu = MotionGenerator(checkpoint, "cpu")(speech, samples=2, sampling=greedy)
    cuda = MotionGenerator(checkpoint, "cuda")
    on_cuda = cuda(speech, samples=2, sampling=greedy)
    assert np.array_equal(on_cuda, cuda(speech, samples=2, sampling=greedy))
    motion = on_cpu - on_cpu.mean(1, keepdims=True)
    difference = np.abs(on_cuda - on_cpu).mean() / np.abs(motion).mean()
    print(f"{kind}: mean |CUDA - CPU| = {difference:.2e} of the mean motion")
    assert on_cuda.shape == on_cpu.shape == (2, 75, 478, 3) and difference < 0.05
    sampled = [cuda(speech, samples=2, seed=seed) for seed in (0, 0, 1)]
    assert np.array_equal(sampled[0], sampled[1])
    if kind == "probabilistic":
        assert not np.array_equal(sampled[0], sampled[2])


def test_generate_command_on_cuda_records_the_device(runs, dataset, tmp_path):
    out = str(tmp_path / "pred")
    assert main(["generate", "--checkpoint", os.path.join(runs["faceformer"], "last.pt"), "--data", dataset,
                 "--split", "train", "--out", out, "--device", "cuda"]) == 0
    with open(os.path.join(out, "generation.json")) as f:
        summary = json.load(f)
    assert summary["device"] == "cuda" and summary["clips"] == 6


def of_face_size(on_cuda: np.ndarray, on_cpu: np.ndarray) -> float:
    """RMS of the difference between two (T, V, 3) mesh sequences over the face's size (the RMS
    distance of the CPU meshes' vertices to their centroid)."""
    return float(np.sqrt(((on_cuda - on_cpu) ** 2).mean() / ((on_cpu - on_cpu.mean(1, keepdims=True)) ** 2).mean()))


def face_crops(n_frames: int) -> np.ndarray:
    from skimage import data
    face = data.astronaut()[0:256, 96:352]
    return np.stack([np.roll(face, shift, axis=1) for shift in range(n_frames)])


def on_both_devices(make_backend, frames: np.ndarray, monkeypatch):
    """(CUDA result, CPU result) of a backend that picks CUDA at ``setup`` when torch sees one."""
    results = []
    for cuda in (True, False):
        with monkeypatch.context() as patch:
            if not cuda:
                patch.setattr(torch.cuda, "is_available", lambda: False)
            backend = make_backend()
            backend.setup()
            assert backend.device == ("cuda" if cuda else "cpu")
            results.append(backend.reconstruct(frames))
            backend.close()
    return results


def test_deca_on_cuda_gives_the_cpu_meshes(deca_files, monkeypatch):
    from voxmesh.recon.deca import DecaBackend
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)  # DECA turns it on; restored after
    on_cuda, on_cpu = on_both_devices(lambda: DecaBackend(*deca_files), face_crops(24), monkeypatch)
    difference = of_face_size(on_cuda.mesh, on_cpu.mesh)
    print(f"deca: RMS |CUDA (bfloat16) - CPU| = {difference:.2e} of the face's size")
    assert difference < 0.01  # bfloat16 keeps 8 bits: 0.4% per value


def test_fan3d_on_cuda_gives_the_cpu_landmarks(fan3d_weights, monkeypatch):
    from voxmesh.recon.fan3d import Fan3D
    on_cuda, on_cpu = on_both_devices(lambda: Fan3D(options=fan3d_weights), face_crops(16), monkeypatch)
    pixels = np.abs(on_cuda.lmk2d - on_cpu.lmk2d)
    print(f"fan3d: |CUDA - CPU| 2D landmarks: median {np.median(pixels):.3g} px, max {pixels.max():.3g} px")
    assert np.median(pixels) < 0.5
    # random weights leave near-ties between heatmap peaks; where every 2D landmark agrees, the depth
    # network (fed the landmark maps made on each device) must agree too
    same = (pixels == 0).all(axis=(1, 2))
    difference = of_face_size(on_cuda.mesh[same], on_cpu.mesh[same])
    print(f"fan3d: {same.sum()} frames with the same 2D landmarks; meshes within {difference:.2e} of the face's size")
    assert same.any() and difference < 0.01


def test_fan3d_landmark_maps_on_cuda_are_the_cpu_maps():
    from voxmesh.recon.fan3d import landmark_targets
    points = np.random.default_rng(0).uniform(-20, 276, (4, 68, 2))
    assert torch.equal(landmark_targets(points, 256, "cuda").cpu(), landmark_targets(points, 256))


def test_flame_fit_on_cuda_matches_the_cpu_fit(tmp_path):
    from flame_synthetic import synthetic_flame, synthetic_track

    from voxmesh.recon.flame import FlameModel, fit_flame
    np.savez(tmp_path / "flame.npz", **synthetic_flame(n_vertices=5023, n_shape=300, n_expression=100))
    model = FlameModel.load(str(tmp_path / "flame.npz"))
    targets, _ = synthetic_track(model, 100, noise=0.005)
    on_cpu, on_cuda = fit_flame(model, targets), fit_flame(model.to("cuda"), targets)
    print(f"flame: landmark RMSE CPU {on_cpu.landmark_rmse:.5f}, CUDA {on_cuda.landmark_rmse:.5f}")
    assert abs(on_cuda.landmark_rmse - on_cpu.landmark_rmse) < 0.02 * on_cpu.landmark_rmse
    difference = of_face_size(on_cuda.vertices, on_cpu.vertices)
    print(f"flame: RMS |CUDA - CPU| vertices = {difference:.2e} of the face's size")
    assert difference < 0.01
