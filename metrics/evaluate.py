"""``voxmesh eval --pred DIR [--pred DIR2 ...] --ref OUT``: the motion metrics of one or more
models' predictions against the reference samples of a voxmesh dataset, with two context rows.

Predictions are ``{key}.npy`` files in ``DIR``: (T, V, 3) for one sample per clip, or (N, T, V, 3)
for N samples of the same audio. A prediction is compared on the frames it shares with its
reference (the shorter length, as CodeTalker's code truncates the prediction).

**Templates.** FDD measures displacement from the face a prediction was placed on: ``DIR/templates/
{key}.npy`` where ``voxmesh generate`` wrote it, else the rule generate uses: the mean face of
another clip of the same speaker in the split, else the target sample's ``neutral.npy`` (its
identity with zero expression and jaw, written by parametric backends), else the topology's
template. Never the target's own mean face.

**Context rows** (computed from the reference alone): "template only", the template repeated
(zero motion: a floor for motion, no sync); "ground truth, shuffled audio", every clip's true motion
replaced by the previous clip's (reading order, cyclic) on its template (real motion that does not follow
the audio: a ceiling for realism and style, a floor for sync).

**N samples.** Every metric of one sample (LVE, MVE, FDD, FD, LSE-D, LSE-C, offset, style) is
computed with the i-th sample of every clip, for i = 1..N, and reported as the mean over i and its
standard deviation (``*_std``); l_cover, l_mean and diversity use all N together.
"""

from __future__ import annotations

import os

import numpy as np

from voxmesh.schemas import Sample, Topology, decode_npy_file, get_topology, is_valid_key, iter_samples, load_samples
from voxmesh.schemas.errors import ConfigError, MissingFileError
from voxmesh.schemas.reader import REFERENCE_COLUMNS, read_manifest, reference_candidates, reference_key

from .scores import Evaluators, ModelScores

TEMPLATE_ONLY, SHUFFLED = "context: template only", "context: ground truth, shuffled audio"


def evaluate(pred_dirs: dict[str, str], ref_dir: str, split: str | None = None, sync_weights: str | None = None,
             style_weights: str | None = None, context: bool = True) -> dict[str, dict]:
    """Per model (name -> its predictions folder), and per context row when ``context``: the
    metrics over the clips it has a prediction for (see :class:`ModelScores` for the figures).
    The reference shards are read once for all models."""
    predictions = {name: _prediction_files(folder) for name, folder in pred_dirs.items()}
    networks = Evaluators(sync_weights, style_weights)
    manifest = read_manifest(ref_dir, REFERENCE_COLUMNS)
    _check_some_match(pred_dirs, predictions, manifest, ref_dir, split)
    templates = _TemplateRule(ref_dir, reference_candidates(manifest, split))
    scores = {name: ModelScores(networks) for name in predictions}
    rows = dict(scores)
    if context:
        rows[TEMPLATE_ONLY], rows[SHUFFLED] = ModelScores(networks), ModelScores(networks)
    truth = ModelScores(networks)  # the reference's own embeddings, for FD and style matching
    first = previous = None
    for sample in iter_samples(ref_dir, split):
        topology = get_topology(sample.meta.topology)
        n_frames = len(sample.mesh)
        truth.add_reference(sample, topology)
        for name, files in predictions.items():
            if sample.key in files:
                pred = _load_prediction(files[sample.key], sample)
                template = _template_of(pred_dirs[name], sample, templates, topology)
                scores[name].add(sample, pred, template, topology)
        if context:
            template = templates.of(sample, topology)
            rows[TEMPLATE_ONLY].add(sample, np.repeat(template[None, None], n_frames, axis=1), template, topology)
            if previous is not None:
                rows[SHUFFLED].add(sample, _moved(previous.mesh, template, n_frames), template, topology)
            first, previous = first or sample, sample
    if context and first is not None and previous is not None and first is not previous:
        template = templates.of(first, get_topology(first.meta.topology))
        rows[SHUFFLED].add(first, _moved(previous.mesh, template, len(first.mesh)), template,
                           get_topology(first.meta.topology))
    results = {name: row.summary(truth) for name, row in rows.items() if row.clips}
    if context and not rows[SHUFFLED].clips:
        results[SHUFFLED] = {"clips": 0, "notes": ["needs two clips or more (each clip's motion is scored against "
                                                   "another clip's audio); evaluate a larger split"]}
    for name, files in predictions.items():
        results.setdefault(name, {"clips": 0})["predictions_without_reference"] = sorted(set(files) - scores[name].keys)
        if 0 < scores[name].clips < truth.clips:
            results[name]["notes"].append(
                f"scored on the {scores[name].clips} of the {truth.clips} reference clips"
                f"{' of split ' + split if split else ''} that it has predictions for; compare it only with rows "
                f"scored on the same clips")
    return results


def _check_some_match(pred_dirs: dict[str, str], predictions: dict[str, dict[str, str]], manifest: list[dict],
                      ref_dir: str, split: str | None) -> None:
    """ConfigError, before any scoring, for a predictions folder none of whose keys is a reference
    sample of ``manifest`` (the rows of ``ref_dir``'s; a wrong --ref or --split would otherwise
    give a table of 0 clips)."""
    reference = {row["key"] for row in manifest if split in (None, row["split"])}
    for name, files in predictions.items():
        if not reference & files.keys():
            raise ConfigError(f"--pred {pred_dirs[name]}: none of its {len(files)} predictions is a sample of "
                              f"{ref_dir}{' split ' + split if split else ''}; check --ref and --split")


class _TemplateRule:
    """The template of a clip when its predictions carry none: the mean face of another clip of the
    same speaker in the split (the first two clips of each speaker in manifest order, as ``voxmesh
    generate`` picks style references), else the clip's ``neutral.npy``, else the topology's template."""

    def __init__(self, ref_dir: str, candidates: dict[str, list[str]]):
        self.candidates = candidates
        keys = [key for keys in self.candidates.values() for key in keys]
        self.faces = {key: sample.mesh.astype(np.float64).mean(axis=0)
                      for key, sample in load_samples(ref_dir, keys).items()} if keys else {}

    def of(self, sample: Sample, topology: Topology) -> np.ndarray:
        other = reference_key(self.candidates, sample.meta.speaker, sample.key)
        if other:
            return self.faces[other]
        return (topology.template if sample.neutral is None else sample.neutral).astype(np.float64)


def _template_of(pred_dir: str, sample: Sample, rule: _TemplateRule, topology: Topology) -> np.ndarray:
    if not is_valid_key(sample.key):  # keys name files here; a shard's may not be one voxmesh wrote
        return rule.of(sample, topology)
    path = os.path.join(pred_dir, "templates", f"{sample.key}.npy")
    return decode_npy_file(path).astype(np.float64) if os.path.isfile(path) else rule.of(sample, topology)


def _moved(other: np.ndarray, template: np.ndarray, n_frames: int) -> np.ndarray:
    """Another clip's motion (its mesh minus its mean face) on ``template``, repeated or cut to
    ``n_frames``: (1, n_frames, V, 3)."""
    motion = other.astype(np.float64) - other.astype(np.float64).mean(axis=0)
    return (np.resize(motion, (n_frames, *motion.shape[1:])) + template)[None]


def _prediction_files(folder: str) -> dict[str, str]:
    if not os.path.isdir(folder):
        raise MissingFileError(f"--pred {folder}: no such folder; give the folder of {{key}}.npy predictions "
                               f"(`voxmesh generate --out`)")
    files = {name[:-4]: os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(".npy")}
    if not files:
        raise MissingFileError(f"no {{key}}.npy predictions in {folder}")
    return files


def _load_prediction(path: str, sample: Sample) -> np.ndarray:
    """The predictions in ``path`` for the reference ``sample``: (N, T, V, 3), V its vertices."""
    pred = decode_npy_file(path)
    if pred.ndim not in (3, 4) or pred.shape[-1] != 3:
        raise ConfigError(f"{path} has shape {pred.shape}; predictions are (T, V, 3) or (N, T, V, 3)")
    if pred.shape[-2] != sample.mesh.shape[1]:
        raise ConfigError(f"{path} has {pred.shape[-2]} vertices; its reference sample has {sample.mesh.shape[1]} "
                          f"({sample.meta.topology}): predict meshes of the reference's topology")
    return (pred if pred.ndim == 4 else pred[None]).astype(np.float64)

