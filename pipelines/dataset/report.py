"""``voxmesh stats OUT_DIR``: a text summary and an HTML report with plots of a built dataset.

Plots: clip length histogram, clips and hours per speaker, head pose angles, reconstruction
confidence, audio-visual offsets and their confidences, failures by reason. Head pose angles
come from the samples' ``pose.npy`` of at most ``max_pose_samples`` samples (read in shard
order); everything else from the Parquet tables.
"""

from __future__ import annotations

import html
import os
import tempfile
from collections import Counter

import numpy as np

from voxmesh.schemas import FPS, iter_samples, storage
from voxmesh.schemas.reader import read_dataset_table

# The pose of a frontal, upright face: head x -> image x, head y (up) -> image -y, head z (out of
# the face) -> image -z (towards the camera).
FRONTAL = np.diag([1.0, -1.0, -1.0])


def head_angles(pose: np.ndarray) -> np.ndarray:
    """Per frame (yaw, pitch, roll) in degrees of the head relative to a frontal pose, from the
    (T, 4, 4) head-to-image similarities of ``pose.npy``."""
    from scipy.spatial.transform import Rotation
    linear = pose[:, :3, :3].astype(np.float64)
    scale = np.cbrt(np.linalg.det(linear))[:, None, None]
    relative = FRONTAL.T @ (linear / scale)
    return Rotation.from_matrix(relative).as_euler("yxz", degrees=True)


def read_tables(output: str) -> tuple[list[dict], list[dict]]:
    """The rows of ``manifest.parquet`` and ``failures.parquet``; MissingFileError when absent."""
    return read_dataset_table(output, "manifest.parquet"), read_dataset_table(output, "failures.parquet")


def summarize(manifest: list[dict], failures: list[dict]) -> dict:
    """Counts of a dataset from its manifest and failure rows (figures over clips are None
    without clips)."""
    seconds = np.array([r["n_frames"] / FPS for r in manifest])
    return {
        "clips": len(manifest),
        "seconds": round(float(seconds.sum()), 2),
        "hours": round(float(seconds.sum() / 3600), 4),
        "speakers": len({r["speaker"] for r in manifest}),
        "clip_seconds": {name: round(float(f(seconds)), 2) if len(seconds) else None
                         for name, f in (("min", np.min), ("median", np.median), ("max", np.max))},
        "clips_by_split": dict(sorted(Counter(r["split"] for r in manifest).items())),
        "failures_by_reason": dict(sorted(Counter(f["reason"] for f in failures).items())),
        "confidence_mean": round(float(np.mean([r["confidence_mean"] for r in manifest])), 4) if manifest else None,
        "av_offset": offset_counts(manifest),
    }


def offset_counts(manifest: list[dict]) -> dict:
    """Clips with an audio-visual offset, those flagged out of sync, and the reasons of the rest."""
    return {"reported": sum(r["av_offset"] is not None for r in manifest),
            "flagged": sum(not r["av_offset_ok"] for r in manifest),
            "none_by_reason": dict(sorted(Counter(r.get("av_offset_reason") or "unknown" for r in manifest
                                                  if r["av_offset"] is None).items()))}


def write_report(output: str, manifest: list[dict], failures: list[dict], summary: dict,
                 report_dir: str | None = None, max_pose_samples: int = 2000) -> str:
    """Write ``report_dir/index.html`` (default ``OUT/report``; a folder or a file-system URI) and
    its PNGs for the dataset in ``output`` with these table rows and summary; return the HTML
    path or URI."""
    report_dir = report_dir or storage.join(output, "report")
    if not storage.is_remote(report_dir):
        return _render_report(output, manifest, failures, summary, report_dir, max_pose_samples)
    with tempfile.TemporaryDirectory() as local:
        _render_report(output, manifest, failures, summary, local, max_pose_samples)
        for name in sorted(os.listdir(local)):
            storage.publish(os.path.join(local, name), storage.join(report_dir, name))
    return storage.join(report_dir, "index.html")


def _render_report(output: str, manifest: list[dict], failures: list[dict], summary: dict, report_dir: str,
                   max_pose_samples: int) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(report_dir, exist_ok=True)
    per_sample = [head_angles(s.pose) for _, s in zip(range(max_pose_samples), iter_samples(output))] if manifest else []
    angles = np.concatenate(per_sample) if per_sample else np.zeros((0, 3))

    per_speaker_clips = Counter(r["speaker"] for r in manifest)
    per_speaker_hours: Counter[str] = Counter()
    for r in manifest:
        per_speaker_hours[r["speaker"]] += r["n_frames"] / FPS / 3600
    top = [s for s, _ in per_speaker_clips.most_common(30)]
    reasons = Counter(f["reason"] for f in failures)

    figures = []

    def save(name: str, title: str, draw) -> None:
        figure, axes = plt.subplots(figsize=(6, 3.5), dpi=100)
        draw(axes)
        axes.set_title(title)
        figure.tight_layout()
        figure.savefig(os.path.join(report_dir, f"{name}.png"))
        plt.close(figure)
        figures.append((name, title))

    save("clip_length", "Clip length (s)", lambda ax: ax.hist([r["n_frames"] / FPS for r in manifest], bins=30))

    def speakers(ax) -> None:
        x = np.arange(len(top))
        ax.bar(x - 0.2, [per_speaker_clips[s] for s in top], width=0.4, label="clips")
        twin = ax.twinx()
        twin.bar(x + 0.2, [per_speaker_hours[s] for s in top], width=0.4, color="tab:orange", label="hours")
        ax.set_xticks(x, top, rotation=90, fontsize=6)
        ax.set_ylabel("clips")
        twin.set_ylabel("hours")
    save("speakers", f"Clips and hours per speaker (top {len(top)})", speakers)

    def pose(ax) -> None:
        for column, name in enumerate(("yaw", "pitch", "roll")):
            ax.hist(angles[:, column], bins=40, histtype="step", label=name)
        ax.set_xlabel("degrees")
        ax.legend()
    save("head_pose", "Head pose angles per frame", pose)
    save("confidence", "Mean reconstruction confidence per clip",
         lambda ax: ax.hist([r["confidence_mean"] for r in manifest], bins=30, range=(0, 1)))

    def offsets(ax) -> None:
        ok = [r["av_offset"] for r in manifest if r["av_offset"] is not None and r["av_offset_ok"]]
        flagged = [r["av_offset"] for r in manifest if r["av_offset"] is not None and not r["av_offset_ok"]]
        bins = np.arange(min(ok + flagged + [-5]) - 0.5, max(ok + flagged + [5]) + 1.5)
        ax.hist([ok, flagged], bins=bins, stacked=True, label=["within the bound", "flagged"],
                color=["tab:blue", "tab:red"])
        ax.set_xlabel("frames the audio lags the mouth")
        ax.legend()
    save("av_offset", f"Audio-visual offsets ({sum(r['av_offset'] is None for r in manifest)} clips without one)",
         offsets)

    def offset_confidence(ax) -> None:
        reported = [r["av_offset_confidence"] for r in manifest if r["av_offset"] is not None]
        withheld = [r["av_offset_confidence"] for r in manifest if r["av_offset"] is None]
        ax.hist([reported, withheld], bins=30, stacked=True, label=["offset reported", "no offset"])
        ax.set_xlabel("confidence (z against chance alignments)")
        ax.legend()
    save("av_offset_confidence", "Audio-visual offset confidence per clip", offset_confidence)
    def failure_reasons(ax) -> None:
        if not reasons:
            ax.text(0.5, 0.5, "none: every input gave a clip", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            return
        ax.barh(list(reasons), list(reasons.values()))
        ax.set_xlabel("inputs")
    save("failures", "Inputs without a clip, by reason", failure_reasons)

    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in summary.items())
    images = "".join(f'<figure><img src="{name}.png" alt="{html.escape(title)}"><figcaption>{html.escape(title)}'
                     f"</figcaption></figure>" for name, title in figures)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>voxmesh dataset report</title></head>"
            f"<body><h1>voxmesh dataset report</h1><p>{html.escape(_location(output))}</p>"
            f"<table>{rows}</table>{images}</body></html>")
    path = os.path.join(report_dir, "index.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path


def _location(output: str) -> str:
    return output if storage.is_remote(output) else os.path.abspath(output)
