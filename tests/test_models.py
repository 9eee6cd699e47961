"""Model parts on small, exactly known inputs: style-reference pairing on long clips, the RVQ's
nearest-code choice under bfloat16 autocast, FaceFormer's biases as its code builds them."""

import math
import os

import numpy as np
import torch

from voxmesh.models.data import REFERENCE_SOURCES, DataConfig, training_stream
from voxmesh.models.layers import alibi_slopes, alignment_mask, periodic_causal_bias
from voxmesh.models.tokenizer import MotionTokenizer, ResidualVQ, TokenizerConfig
from voxmesh.schemas import SampleMeta, SampleTarWriter, make_key, write_manifest
from voxmesh.schemas.sample import Sample

WINDOW = 32
FRAMES = 500  # 20 s at 25 fps: 15 windows per clip, more than the 8 a speaker's cache holds


def long_clip(speaker: str, clip: int, slope: int) -> Sample:
    """A 20 s clip whose vertex 0 moves by 1 per frame and vertex 1 by ``slope`` per frame, so
    that a window's motion names its clip (the slope) and its first frame."""
    key = make_key(speaker, "vid", "00001", 0, clip)
    meta = SampleMeta(key=key, split="train", speaker=speaker, video="vid", utterance="00001", track=0, clip=clip,
                      source_uri=f"/data/{speaker}.mp4", start_time=0.0, end_time=FRAMES / 25, n_frames=FRAMES,
                      n_samples=FRAMES * 640, backend="test", backend_version="1", topology="mediapipe478",
                      confidence_mean=0.9, lip_motion=1.0, jitter=0.01, av_offset=0, av_offset_confidence=0.3,
                      av_offset_ok=True, audio_start_offset=0.0)
    mesh = np.zeros((FRAMES, 478, 3), np.float32)
    mesh[:, 0, 0] = np.arange(FRAMES)
    mesh[:, 1, 0] = slope * np.arange(FRAMES)
    return Sample(meta=meta, mesh=mesh, pose=np.tile(np.eye(4, dtype=np.float32), (FRAMES, 1, 1)),
                  audio=np.zeros(FRAMES * 640, np.int16), lmk2d=np.zeros((FRAMES, 478, 2), np.float32))


def clip_and_start(motion: np.ndarray) -> tuple[int, int]:
    """(slope, first frame) of a window cut from :func:`long_clip` (motion = mesh - clip mean)."""
    return round(float(motion[1, 1, 0] - motion[0, 1, 0])), round(float(motion[0, 0, 0]) + (FRAMES - 1) / 2)


def test_long_clips_never_reference_their_own_clip_or_overlap(tmp_path):
    """Speaker a: two 20 s clips; speaker b: one 20 s clip. The old per-speaker cache of 8
    windows held only the current clip after 8 windows, and paired 36 of 60 windows with
    themselves; now a's windows always take a window of a's other clip, b's a window of b's clip
    that does not overlap, and the loader counts both."""
    out = str(tmp_path / "dataset")
    samples = [long_clip("a", 0, slope=1), long_clip("a", 1, slope=2), long_clip("b", 0, slope=3)]
    with SampleTarWriter(out, "train", 0, inputs=["x"]) as writer:
        for sample in samples:
            writer.write_members(sample.meta, sample.to_members())
        rows = writer.commit().samples
    write_manifest(rows, os.path.join(out, "manifest.parquet"))
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
