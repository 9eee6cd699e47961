"""``voxmesh eval --pred DIR [--pred DIR2 ...] --ref OUT``: all motion metrics for one or more
models' predictions against the reference samples of a voxmesh dataset, as a JSON file and a
Markdown table with a row per model.

Predictions are ``{key}.npy`` files in ``DIR``: (T, V, 3) for one sample per clip, or (N, T, V, 3)
for N samples of the same audio (then l_cover, l_mean and diversity are reported too). A
prediction is compared on the frames it shares with its reference (the shorter length).
"""

from __future__ import annotations

import json
import os

import numpy as np

from voxmesh.schemas import SAMPLES_PER_FRAME, decode_npy_file, get_topology, iter_samples
from voxmesh.schemas.errors import MissingFileError

from .motion import (
    coverage_lip_error,
    diversity,
    frechet_distance,
    lip_vertex_error,
    mean_sample_lip_error,
    mean_vertex_error,
    motion_features,
    upper_face_dynamics_deviation,
)
from .sync import estimate_offset

COLUMNS = {  # name in the table: (key in the results, format)
    "LVE": ("lip_vertex_error", "{:.4f}"), "MVE": ("mean_vertex_error", "{:.4f}"), "FDD": ("fdd", "{:+.4f}"),
    "l_cover": ("coverage_lip_error", "{:.4f}"), "l_mean": ("mean_sample_lip_error", "{:.4f}"),
    "Div": ("diversity", "{:.4f}"), "FD": ("frechet_distance", "{:.3f}"),
    "|offset|": ("mean_abs_av_offset", "{:.2f}"), "Sync": ("sync_score", "{:.3f}"),
}


def evaluate(pred_dirs: dict[str, str], ref_dir: str, split: str | None = None,
             sync_weights: str | None = None) -> dict[str, dict]:
    """Per model (name -> its predictions folder): metrics averaged over the clips it has a
    prediction for, and counts of what was compared. The reference shards are read once for all
    models."""
    predictions = {name: _prediction_files(folder) for name, folder in pred_dirs.items()}
    sync_model = None
    if sync_weights:
        from .syncnet import load_syncnet
        sync_model, _ = load_syncnet(sync_weights)
    per_clip: dict[str, dict[str, list[float]]] = {name: {} for name in predictions}
    features: dict[str, tuple[list, list]] = {name: ([], []) for name in predictions}
    found: dict[str, set[str]] = {name: set() for name in predictions}
    for sample in iter_samples(ref_dir, split):
        for name, files in predictions.items():
            if sample.key not in files:
                continue
            found[name].add(sample.key)
            values, pred_features, ref_features = _clip_metrics(decode_npy_file(files[sample.key]), sample, sync_model)
            for metric, value in values.items():
                per_clip[name].setdefault(metric, []).append(float(value))
            features[name][0].append(pred_features)
            features[name][1].append(ref_features)
    return {name: _summary(per_clip[name], *features[name], found[name], predictions[name]) for name in predictions}


def _prediction_files(folder: str) -> dict[str, str]:
    files = {name[:-4]: os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(".npy")}
    if not files:
        raise MissingFileError(f"no {{key}}.npy predictions in {folder}")
    return files


def _clip_metrics(pred: np.ndarray, sample, sync_model) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """One clip's metrics, and the motion features of prediction and reference for the FD."""
    topology = get_topology(sample.meta.topology)
    samples = pred if pred.ndim == 4 else pred[None]
    n = min(samples.shape[1], len(sample.mesh))
    samples, truth = samples[:, :n].astype(np.float64), sample.mesh[:n].astype(np.float64)
    first, audio = samples[0], sample.audio[:n * SAMPLES_PER_FRAME]
    values = {
        "lip_vertex_error": lip_vertex_error(first, truth, topology.lip_idx),
        "mean_vertex_error": mean_vertex_error(first, truth),
        "fdd": upper_face_dynamics_deviation(first, truth, topology.upper_face_idx),
        "mean_abs_av_offset": abs(estimate_offset(first, audio, topology).best_lag),
    }
    if len(samples) > 1:
        values["coverage_lip_error"] = coverage_lip_error(samples, truth, topology.lip_idx)
        values["mean_sample_lip_error"] = mean_sample_lip_error(samples, truth, topology.lip_idx)
        values["diversity"] = diversity(samples)
    if sync_model is not None:
        from .syncnet import Clip, sync_score
        values["sync_score"] = sync_score(sync_model, Clip.from_arrays(first, audio, topology))
    return values, motion_features(first, topology.lip_idx), motion_features(truth, topology.lip_idx)


def _summary(per_clip: dict[str, list[float]], pred_features: list, ref_features: list, found: set[str],
             files: dict[str, str]) -> dict:
    results = {name: float(np.mean(values)) for name, values in per_clip.items()}
    pred_features = np.concatenate(pred_features or [np.zeros((0, 1))])
    ref_features = np.concatenate(ref_features or [np.zeros((0, 1))])
    if len(pred_features) > pred_features.shape[1] and len(ref_features) > ref_features.shape[1]:
        results["frechet_distance"] = frechet_distance(pred_features, ref_features)
    results["clips"] = len(found)
    results["predictions_without_reference"] = sorted(set(files) - found)
    return results


def markdown_table(table: dict[str, dict]) -> str:
    """Results of several models (name -> :func:`evaluate`'s dict) as one Markdown table, a row
    per model, the columns any model has a value for in the order of the papers' tables ("-" where
    a model has none: l_cover, l_mean and Div need several samples per clip)."""
    present = [(column, key, fmt) for column, (key, fmt) in COLUMNS.items()
               if any(key in results for results in table.values())]
    lines = ["| model | " + " | ".join(c for c, _, _ in present) + " | clips |", "| --- " * (len(present) + 2) + "|"]
    for name, results in table.items():
        cells = [fmt.format(results[key]) if key in results else "-" for _, key, fmt in present]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {results['clips']} |")
    return "\n".join(lines) + "\n"


def write_results(table: dict[str, dict], out_prefix: str) -> tuple[str, str]:
    """``OUT.json`` (model name -> results) and ``OUT.md`` (the table)."""
    with open(f"{out_prefix}.json", "w") as f:
        json.dump(table, f, indent=1, sort_keys=True)
    with open(f"{out_prefix}.md", "w") as f:
        f.write(markdown_table(table))
    return f"{out_prefix}.json", f"{out_prefix}.md"
