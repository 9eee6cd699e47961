"""Model parts on small, exactly known inputs: style-reference pairing on long clips, the RVQ's
nearest-code choice under bfloat16 autocast, FaceFormer's biases as its code builds them,
CodeTalker's stage 1 (losses, codebook learning, shapes) as its released code computes them."""

import math
import os

import numpy as np
import pytest
import torch
from conftest import synthetic_sample, write_dataset

from voxmesh.models.codetalker_vq import CodeTalkerVQ, CodeTalkerVQConfig, FactorizedQuantizer, PositionalEncoding
from voxmesh.models.data import REFERENCE_SOURCES, DataConfig, training_stream
from voxmesh.models.layers import alibi_slopes, alignment_mask, periodic_causal_bias
from voxmesh.models.tokenizer import MotionTokenizer, ResidualVQ, TokenizerConfig
from voxmesh.schemas import make_key
from voxmesh.schemas.sample import Sample

WINDOW = 32
FRAMES = 500  # 20 s at 25 fps: 15 windows per clip, more than the 8 a speaker's cache holds


def long_clip(speaker: str, clip: int, slope: int) -> Sample:
    """A 20 s clip whose vertex 0 moves by 1 per frame and vertex 1 by ``slope`` per frame, so
    that a window's motion names its clip (the slope) and its first frame."""
    mesh = np.zeros((FRAMES, 478, 3), np.float32)
    mesh[:, 0, 0] = np.arange(FRAMES)
    mesh[:, 1, 0] = slope * np.arange(FRAMES)
    return synthetic_sample(speaker, clip, mesh, np.zeros(FRAMES * 640, np.int16))


def clip_and_start(motion: np.ndarray) -> tuple[int, int]:
    """(slope, first frame) of a window cut from :func:`long_clip` (motion = mesh - clip mean)."""
    return round(float(motion[1, 1, 0] - motion[0, 1, 0])), round(float(motion[0, 0, 0]) + (FRAMES - 1) / 2)


def test_long_clips_never_reference_their_own_clip_or_overlap(tmp_path):
    """Speaker a: two 20 s clips; speaker b: one 20 s clip. The old per-speaker cache of 8
    windows held only the current clip after 8 windows, and paired 36 of 60 windows with
    themselves; now a's windows always take a window of a's other clip, b's a window of b's clip
    that does not overlap, and the loader counts both."""
    out = str(tmp_path / "dataset")
    write_dataset(out, [long_clip("a", 0, slope=1), long_clip("a", 1, slope=2), long_clip("b", 0, slope=3)])
    stream = training_stream(DataConfig(dataset=out, window=WINDOW, shuffle_buffer=16, reference_cache=8))
    windows = [w for _, w in zip(range(200), stream)]
    slopes = {make_key("a", "vid", "00001", 0, 0): 1, make_key("a", "vid", "00001", 0, 1): 2}
    for window in windows:
        clip, start = clip_and_start(window["motion"])
        assert (clip, start) == (slopes.get(window["key"], 3), window["start"])
        assert window["has_reference"]
        reference_clip, reference_start = clip_and_start(window["reference"])
        if window["speaker"] == "a":
            assert reference_clip in (1, 2) and reference_clip != clip, window["key"]
            assert window["reference_source"] == "other_clip"
        else:
            assert reference_clip == 3 and abs(reference_start - start) >= WINDOW, (start, reference_start)
            assert window["reference_source"] == "same_clip"
    counts = stream.pipeline[-1].stats.references
    assert set(counts) == set(REFERENCE_SOURCES) and counts["none"] == 0
    assert counts["other_clip"] >= sum(w["speaker"] == "a" for w in windows)
    assert counts["same_clip"] >= sum(w["speaker"] == "b" for w in windows) > 0


def test_rvq_picks_the_float32_nearest_code_under_bfloat16_autocast():
    """Codes and latents far from the origin with close neighbours: squared distances computed in
    bfloat16 lose the differences (the check on `wrong` shows this data would catch it)."""
    generator = torch.Generator().manual_seed(0)
    rvq = ResidualVQ(levels=1, size=64, dim=16, decay=0.99)
    rvq.codebooks[0] = 50 + torch.randn(64, 16, generator=generator)
    latents = rvq.codebooks[0][torch.randint(64, (512,), generator=generator)] + 0.3 * torch.randn(512, 16, generator=generator)
    exact = torch.cdist(latents.double(), rvq.codebooks[0].double()).argmin(-1)
    low = latents.bfloat16()
    in_bfloat16 = (low.pow(2).sum(-1, keepdim=True) - 2 * low @ rvq.codebooks[0].bfloat16().T
                   + rvq.codebooks[0].bfloat16().pow(2).sum(-1)).argmin(-1)
    wrong = (in_bfloat16 != exact).float().mean()
    assert wrong > 0.5, wrong
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(rvq.quantize(latents)[:, 0], exact)
        rvq.train()
        rvq.initialized.fill_(True)
        _, codes, _ = rvq(latents[None])
        assert torch.equal(codes[0, :, 0], exact)


def test_factorized_codebook_cuts_each_frame_into_pieces():
    """CodeTalker's stage 1: ``factors`` codes per frame from one shared codebook, no downsampling."""
    tokenizer = MotionTokenizer(30, TokenizerConfig(hidden=16, latent=32, levels=1, codebook_size=8, downsample=0,
                                                    factors=4)).train()
    motion = torch.randn(2, 10, 30)
    loss, _ = tokenizer({"motion": motion})
    assert torch.isfinite(loss) and tokenizer.rvq.codebooks.shape == (1, 8, 8)
    codes = tokenizer.eval().encode(motion)
    assert codes.shape == (2, 10 * 4, 1)
    assert tokenizer.decode(codes).shape == motion.shape
    latents = tokenizer.encode_latents(motion)
    assert torch.equal(tokenizer.steps(tokenizer.pieces(latents)), latents)
    assert torch.allclose(tokenizer.quantized(latents), tokenizer.steps(tokenizer.rvq.lookup(codes)))


def test_faceformer_biases_as_its_code_builds_them():
    """``init_biased_mask`` (period p): bias -slope * floor((i - j) / p) for j <= i, -inf above;
    ``enc_dec_mask`` (VOCASET): frame i attends to speech frame i only."""
    bias = periodic_causal_bias(4, 7, period=3)
    slopes = [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8]
    assert alibi_slopes(4) == slopes
    for h in range(4):
        for i in range(7):
            for j in range(7):
                expected = -math.inf if j > i else -slopes[h] * ((i - j) // 3)
                assert float(bias[h, i, j]) == expected
    assert alibi_slopes(6) == [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3]
    mask = alignment_mask(4, 5)
    assert mask.tolist() == [[j != i for j in range(5)] for i in range(4)]


def small_codetalker_vq(**overrides) -> CodeTalkerVQ:
    config = CodeTalkerVQConfig(**{"factors": 3, "code_dim": 4, "codebook_size": 5, "layers": 1, "heads": 2,
                                   "intermediate": 8, **overrides})
    torch.manual_seed(0)
    return CodeTalkerVQ(30, config)


def test_codetalker_quantizer_losses_on_a_hand_computed_example():
    """``VectorQuantizer.forward``: nearest entry by squared distance, loss = beta * mean((sg[z_q] - z)^2)
    + mean((z_q - sg[z])^2); here as the two terms on a 2-piece example worked by hand."""
    quantizer = FactorizedQuantizer(size=3, dim=2)
    with torch.no_grad():
        quantizer.embedding.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [3.0, 0.0]]))
    pieces = torch.tensor([[0.9, 1.2], [2.0, 0.0]], requires_grad=True)
    quantized, codes, codebook, commitment = quantizer(pieces)
    assert codes.tolist() == [1, 2]  # (0.9, 1.2) -> (1, 1): 0.05; (2, 0) -> (3, 0): 1 < (1, 1): 2
    # squared differences: (0.1^2 + 0.2^2) + (1^2 + 0) = 1.05 over 4 entries
    assert torch.isclose(codebook, torch.tensor(1.05 / 4)) and torch.isclose(commitment, torch.tensor(1.05 / 4))
    assert torch.equal(quantized.detach(), torch.tensor([[1.0, 1.0], [3.0, 0.0]]))
    quantized.sum().backward()  # straight-through: the pieces get the gradient of their codes
    assert torch.equal(pieces.grad, torch.ones(2, 2))


def test_codetalker_stage1_loss_is_the_published_formula():
    """``calc_vq_loss``: L1(reconstruction, motion) + quant_loss_weight * (codebook + beta * commitment),
    written out from the module's own encoder, codebook and decoder on fixed inputs."""
    model = small_codetalker_vq(beta=0.25, quant_weight=0.5).eval()
    motion = torch.randn(2, 7, 30, generator=torch.Generator().manual_seed(1))
    loss, values = model({"motion": motion})
    z = model.encode_latents(motion).unflatten(-1, (3, 4))
    flat = z.reshape(-1, 4)
    codes = torch.cdist(flat.double(), model.quantizer.embedding.weight.double()).argmin(-1)
    z_q = model.quantizer.embedding.weight[codes].view_as(z)
    expected_quantization = 0.25 * ((z_q - z) ** 2).mean() + ((z_q - z) ** 2).mean()
    reconstruction = (model.decode_latents(z_q.flatten(-2)) - motion).abs().mean()
    assert torch.isclose(loss, reconstruction + 0.5 * expected_quantization, rtol=1e-5)
    assert values["reconstruction"] == pytest.approx(float(reconstruction.detach()), rel=1e-5)
    # the two terms have the same value; beta must weight the commitment one: the codebook gets
    # quant_weight times the codebook term's gradient, unscaled by beta
    model.zero_grad()
    loss.backward()
    reference = model.quantizer.embedding.weight.detach().clone().requires_grad_(True)
    (0.5 * ((reference[codes].view_as(z) - z.detach()) ** 2).mean()).backward()
    assert torch.allclose(model.quantizer.embedding.weight.grad, reference.grad, rtol=1e-5, atol=1e-8)


def test_codetalker_codebook_learns_by_gradient_not_by_moving_averages():
    """The codebook loss moves the chosen entries and nothing else; the commitment loss moves the
    encoder and not the codebook; a training forward pass alone changes no weight (no EMA)."""
    model = small_codetalker_vq().train()
    motion = torch.randn(2, 6, 30, generator=torch.Generator().manual_seed(2))
    before = {name: value.clone() for name, value in model.state_dict().items()}
    _, codes, codebook, commitment = model.quantizer(model.pieces(model.encode_latents(motion)))
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    assert not list(model.quantizer.buffers())
    commitment.backward(retain_graph=True)
    assert model.quantizer.embedding.weight.grad is None and model.motion_in[0].weight.grad.abs().sum() > 0
    model.zero_grad()
    codebook.backward()
    chosen = codes.unique()
    assert 0 < len(chosen) < 5  # some entries unused: the check below can fail
    moved = model.quantizer.embedding.weight.grad.abs().sum(-1) > 0
    assert moved[chosen].all() and not moved[[i for i in range(5) if i not in chosen.tolist()]].any()
    assert model.motion_in[0].weight.grad is None or model.motion_in[0].weight.grad.abs().sum() == 0


def test_codetalker_stage1_shapes_per_frame():
    """No temporal downsampling: one hidden-size latent per frame, ``factors`` codes per frame."""
    model = small_codetalker_vq().eval()
    motion = torch.randn(2, 9, 30)
    latents = model.encode_latents(motion)
    assert latents.shape == (2, 9, 12) and model.pieces(latents).shape == (2, 9, 3, 4)
    assert model.quantizer.nearest(model.pieces(latents)).shape == (2, 9, 3)
    quantized = model.quantized(latents)
    assert quantized.shape == latents.shape and model.decode_latents(quantized).shape == motion.shape
    rows = model.quantizer.embedding.weight.tolist()
    assert all(piece in rows for piece in model.pieces(quantized).reshape(-1, 4).tolist())
    assert model.decode_latents(quantized[:, :1]).shape == (2, 1, 30)  # a single frame, as stage 2's first step


def test_codetalker_positional_encodings_released_and_sequence():
    """Released: the table indexed by the batch axis, i.e. position 0's encoding (sin 0, cos 0 =
    0, 1, ...) on every frame at batch size 1; sequence: each frame's own position."""
    x = torch.zeros(1, 3, 4)
    released = PositionalEncoding(4, "released", dropout=0.0)(x)
    assert torch.equal(released, torch.tensor([[0.0, 1.0, 0.0, 1.0]]).expand(1, 3, 4))
    sequence = PositionalEncoding(4, "sequence", dropout=0.0)(x)
    for t in range(3):
        expected = [math.sin(t), math.cos(t), math.sin(t / 100), math.cos(t / 100)]
        assert np.allclose(sequence[0, t].numpy(), expected, atol=1e-6)


def test_vq_vocaset_config_selects_codetalkers_published_stage1():
    """``config/vocaset/stage1.yaml``: hidden_size 1024 = face_quan_num 16 x zquant_dim 64, n_embed
    256, 6 layers, 8 heads, intermediate 1536, neg 0.2, beta 0.25, quant_loss_weight 1, lr 1e-4."""
    from voxmesh.models.config import load_config
    config = load_config(os.path.join(os.path.dirname(__file__), "..", "models", "configs", "vq_vocaset.toml"))
    assert config.kind == "codetalker_vq" and config.train.lr == 1e-4
    assert config.codetalker_vq == CodeTalkerVQConfig(factors=16, code_dim=64, codebook_size=256, layers=6, heads=8,
                                                      intermediate=1536, negative_slope=0.2, dropout=0.1, beta=0.25,
                                                      quant_weight=1.0, positional="released")
    assert config.codetalker_vq.hidden == 1024
