"""The figures of one row of ``voxmesh eval`` (a model, or a context row), accumulated clip by
clip so that a split is read once and never held in memory.

Pooling follows the published code: lip vertex errors (both conventions), MVE, l_cover and l_mean
pool all frames of all clips (CodeTalker's ``cal_metric.py``); FDD, LSE-D, LSE-C, the offset and
diversity are means over clips (CodeTalker's FDD, Wav2Lip's LSE); FD and style matching are taken
over the whole split. With N samples per clip, the per-sample figures are computed for each sample
index and reported as mean and standard deviation over the N.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from voxmesh.schemas import SAMPLES_PER_FRAME, Sample, Topology
from voxmesh.schemas.errors import ConfigError

from .motion import diversity, frame_lip_errors, frechet_distance, upper_face_dynamics_deviation
from .sync import estimate_offset

if TYPE_CHECKING:
    from .style import StyleModel
    from .syncnet import SyncNet3D



class Evaluators:
    """The optional learned evaluation networks: SyncNet-3D (LSE-D, LSE-C, FD on its lip-motion
    embeddings) and the style network (style matching, FD on its embeddings)."""

    def __init__(self, sync_weights: str | None = None, style_weights: str | None = None):
        self.sync: SyncNet3D | None = None
        self.style: StyleModel | None = None
        if sync_weights:
            from .syncnet import load_syncnet
            self.sync = load_syncnet(sync_weights)[0]
        if style_weights:
            from .style import load_style
            self.style = load_style(style_weights)


def _peak_lag(mesh: np.ndarray, audio: np.ndarray, topology: Topology) -> float:
    """|peak lag| of the model-free offset estimate's correlation curve, whether or not the
    estimate is confident; NaN where no curve was computed (a still mouth, no speech, a clip too
    short), which a mean would otherwise count as a perfect 0."""
    estimate = estimate_offset(mesh, audio, topology)
    return float(abs(estimate.best_lag)) if len(estimate.correlations) else float("nan")


class ModelScores:
    """Running sums of one row; :meth:`summary` turns them into figures."""

    def __init__(self, networks: Evaluators):
        self.networks = networks
        self.keys: set[str] = set()
        self.n_samples = 0
        self.frames = 0
        self.sums: dict[str, np.ndarray | float] = {}
        self.per_clip: dict[str, list] = {}
        self.windows: dict[str, list[list[np.ndarray]]] = {"fd_style": [], "fd_sync": []}
        self.styles: list[dict[str, np.ndarray]] = []
        self.speaker_of: dict[str, str] = {}
        self.skipped: dict[str, int] = {}

    @property
    def clips(self) -> int:
        return len(self.keys)

    def _sum(self, name: str, value) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + value

    def add(self, sample: Sample, pred: np.ndarray, template: np.ndarray, topology: Topology) -> None:
        """One clip: ``pred`` (N, T', V, 3) against ``sample``, ``template`` (V, 3) the face the
        prediction was placed on."""
        if self.n_samples and len(pred) != self.n_samples:
            raise ConfigError(f"the prediction for {sample.key} has {len(pred)} samples, the others "
                              f"{self.n_samples}; give every clip the same number")
        self.n_samples = len(pred)
        n = min(pred.shape[1], len(sample.mesh))
        draws, truth = pred[:, :n], sample.mesh[:n].astype(np.float64)
        audio = sample.audio[:n * SAMPLES_PER_FRAME]
        self.keys.add(sample.key)
        self.speaker_of[sample.key] = sample.meta.speaker
        self.frames += n
        squared = frame_lip_errors(draws, truth[None], topology.lip_idx, squared=True)  # (N, n)
        self._sum("lip_vertex_error", squared.sum(axis=1))
        self._sum("lip_vertex_error_text", np.sqrt(squared).sum(axis=1))  # the max of squares' root
        self._sum("mean_vertex_error", np.linalg.norm(draws - truth, axis=-1).mean(axis=-1).sum(axis=1))
        self._clip("fdd", [upper_face_dynamics_deviation(d, truth, topology.upper_face_idx, template) for d in draws])
        self._clip("mean_abs_av_offset", [_peak_lag(d, audio, topology) for d in draws])
        if len(draws) > 1:
            self._sum("coverage_lip_error", squared[int(np.argmin(squared.mean(axis=1)))].sum())
            self._sum("mean_sample_lip_error", frame_lip_errors(draws.mean(axis=0), truth, topology.lip_idx).sum())
            self._clip("diversity", diversity(draws))
        self._networks(sample, draws, audio, topology)

    def _clip(self, name: str, value) -> None:
        self.per_clip.setdefault(name, []).append(value)

    def _networks(self, sample: Sample, draws: np.ndarray, audio: np.ndarray, topology: Topology,
                  lip_sync: bool = True) -> None:
        """The learned networks' figures of ``draws``; without ``lip_sync`` only the embeddings
        that FD and style matching compare against (a reference clip's)."""
        sync, style = self.networks.sync, self.networks.style
        if sync is not None:
            from .syncnet import Clip, audio_embeddings, lip_sync_error, motion_embeddings
            try:
                clips = [Clip.from_arrays(d, audio, topology) for d in draws]
                motions = [motion_embeddings(sync, clip) for clip in clips]
                sound = audio_embeddings(sync, clips[0]) if lip_sync else None  # the same audio under every sample
            except ValueError:
                self.skipped["sync"] = self.skipped.get("sync", 0) + 1
            else:
                self._per_sample_windows("fd_sync", [motion.numpy() for motion in motions])
                if sound is not None:
                    measures = [lip_sync_error(motion, sound) for motion in motions]
                    self._clip("lse_d", [m.distance for m in measures])
                    self._clip("lse_c", [m.confidence for m in measures])
        if style is not None:
            from .style import clip_style
            try:
                windows = [style.window_embeddings(d) for d in draws]
            except ValueError:
                self.skipped["style"] = self.skipped.get("style", 0) + 1
            else:
                self._per_sample_windows("fd_style", windows)
                for index, embeddings in enumerate(windows):
                    if len(self.styles) <= index:
                        self.styles.append({})
                    self.styles[index][sample.key] = clip_style(embeddings)

    def _per_sample_windows(self, name: str, embeddings: list[np.ndarray]) -> None:
        for index, windows in enumerate(embeddings):
            if len(self.windows[name]) <= index:
                self.windows[name].append([])
            self.windows[name][index].append(windows)

    def add_reference(self, sample: Sample, topology: Topology) -> None:
        """A reference clip's own embeddings (the real side of FD and style matching)."""
        self.keys.add(sample.key)
        self.speaker_of[sample.key] = sample.meta.speaker
        self._networks(sample, sample.mesh[None].astype(np.float64), sample.audio, topology, lip_sync=False)

    def summary(self, truth: ModelScores) -> dict:
        """The row's figures; ``notes`` says which could not be computed and why."""
        per_sample: dict[str, np.ndarray] = {}
        notes: list[str] = []
        for name in ("lip_vertex_error", "lip_vertex_error_text", "mean_vertex_error"):
            per_sample[name] = np.asarray(self.sums[name]) / self.frames
        for name in ("fdd", "lse_d", "lse_c"):
            if name in self.per_clip:
                per_sample[name] = np.asarray(self.per_clip[name], dtype=np.float64).mean(axis=0)
        lags = np.asarray(self.per_clip["mean_abs_av_offset"], dtype=np.float64)  # (clips, N); NaN: no peak
        peaked = ~np.isnan(lags).any(axis=1)  # clips with a peak in every sample: each sample averages the same clips
        if peaked.any():
            per_sample["mean_abs_av_offset"] = lags[peaked].mean(axis=0)
        if not peaked.all():
            notes.append(f"|offset|: {int((~peaked).sum())} of {len(lags)} clips have no correlation peak in some "
                         f"sample (a still mouth, no speech, or shorter than the estimate needs) and are left out")
        for name, windows in self.windows.items():
            if windows and truth.windows[name]:
                try:
                    real = np.concatenate(truth.windows[name][0])
                    per_sample[name] = np.array([frechet_distance(np.concatenate(w), real) for w in windows])
                except ValueError as error:
                    notes.append(f"{name}: {error}; evaluate a larger split")
        if self.styles:
            from .style import style_matching
            try:
                matched = [style_matching(styles, truth.styles[0], truth.speaker_of) for styles in self.styles]
                per_sample["style_matching"] = np.array([accuracy for accuracy, _ in matched])
            except ValueError as error:
                notes.append(str(error))  # its text names style matching
        results: dict = {}
        for name, values in per_sample.items():
            results[name] = float(values.mean())
            if self.n_samples > 1:
                results[f"{name}_std"] = float(values.std())
        for name in ("coverage_lip_error", "mean_sample_lip_error"):
            if name in self.sums:
                results[name] = float(self.sums[name]) / self.frames
        if "diversity" in self.per_clip:
            results["diversity"] = float(np.mean(self.per_clip["diversity"]))
        notes += [f"{name}: {count} clip(s) too short, left out" for name, count in sorted(self.skipped.items())]
        results.update(clips=self.clips, samples=self.n_samples, frames=self.frames, notes=notes)
        return results
