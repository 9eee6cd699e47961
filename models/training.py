"""``voxmesh train --config RUN.toml``: train a tokenizer or a generator from voxmesh shards.

One process, or several under ``torchrun`` (``WORLD_SIZE`` set: a process group over gloo on CPU,
NCCL on CUDA; the model wrapped in DistributedDataParallel; every process draws its own windows;
the logged loss is the mean over processes; process 0 writes the run folder).

The run folder (``out`` in the config) holds ``config.toml``, ``log.jsonl`` (one line per
``log_every`` steps, with the fractions of the windows trained on whose style reference came from
another clip, the same clip or nowhere: ``references_other_clip``, ``references_same_clip``,
``references_none``) and ``last.pt``, written every ``checkpoint_every`` steps and at the end.
``--resume`` continues from ``last.pt``: model, optimizer, random state and step are restored and
the (deterministic) window stream is replayed to that step, so the loss curve continues exactly as
if the run had not stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn

from voxmesh.models.audio import audio_features
from voxmesh.models.checkpoint import build_model, load_checkpoint, save_checkpoint
from voxmesh.models.config import TOKENIZER_KIND, RunConfig, to_toml
from voxmesh.models.data import REFERENCE_SOURCES, make_loader, training_stream
from voxmesh.models.normalization import Stats, compute_stats
from voxmesh.schemas.errors import ConfigError, DatasetStateError
from voxmesh.schemas.settings import differences


def prepare_batch(raw: dict, features: nn.Module, stats: Stats, device: torch.device) -> dict:
    """A loader batch -> the normalized tensors the models take (see :mod:`voxmesh.models.generators`)."""
    motion = raw["motion"].to(device)
    with torch.no_grad():
        frame_features = features(raw["audio"].to(device), motion.shape[1])
    return {"motion": stats.normalize_motion(motion), "reference": stats.normalize_motion(raw["reference"].to(device)),
            "has_reference": raw["has_reference"].to(device), "features": stats.normalize_features(frame_features)}


def mixed_precision(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast for a training step on CUDA when ``amp`` (``train.amp``); none on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and amp else contextlib.nullcontext()


def reference_fractions(counts: dict[str, int]) -> dict[str, float]:
    """Reference sources counted over the windows trained on -> ``references_{source}`` fractions."""
    total = max(sum(counts.values()), 1)
    return {f"references_{source}": round(counts.get(source, 0) / total, 4) for source in REFERENCE_SOURCES}


def _distributed(device_setting: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device); joins the process group when started by torchrun."""
    use_cuda = device_setting == "cuda" or (device_setting == "auto" and torch.cuda.is_available())
    if device_setting == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device = cuda, but no CUDA device is visible to torch")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    return rank, world, device


def _initial_state(config: RunConfig, features: nn.Module) -> tuple[RunConfig, Stats, dict | None]:
    """The config (a generator takes its stage 1's settings), normalization statistics and the
    stage 1's weights for generators that need one."""
    if config.kind not in TOKENIZER_KIND:
        return config, compute_stats(config.data, features), None
    tokenizer = load_checkpoint(config.tokenizer_checkpoint)
    tokenizer_config = RunConfig.from_dict(tokenizer["config"], source=config.tokenizer_checkpoint)
    section = TOKENIZER_KIND[config.kind]
    if tokenizer_config.kind != section:
        raise ConfigError(f"{config.tokenizer_checkpoint} is a {tokenizer_config.kind} checkpoint; "
                          f"kind {config.kind} needs a {section} checkpoint")
    config = RunConfig.from_dict({**config.to_dict(), section: tokenizer_config.to_dict()[section]})
    stats = Stats.from_dict(tokenizer["stats"])
    if tokenizer_config.data.audio_model != config.data.audio_model:  # the features this generator reads
        fresh = compute_stats(config.data, features)
        stats = dataclasses.replace(stats, feature_mean=fresh.feature_mean, feature_std=fresh.feature_std)
    return config, stats, tokenizer["model"]


def _check_same_run(config: RunConfig, recorded: dict, last: str) -> None:
    """A resumed run continues the checkpoint's model on the checkpoint's data: only [train]
    settings (more steps, another learning rate) may differ from it. ConfigError naming the
    settings that do (the section a generator takes from its tokenizer's checkpoint aside)."""
    def compared(values: dict) -> dict:
        return {section: value for section, value in values.items()
                if section not in ("train", "out", TOKENIZER_KIND.get(config.kind))}
    changed = differences(compared(RunConfig.from_dict(recorded, source=last).to_dict()), compared(config.to_dict()))
    if changed:
        raise ConfigError(f"{last} was trained with other settings ({'; '.join(changed[:3])}); on --resume only "
                          f"[train] settings may change: drop the others, or set another `out` for a new run")


def train(config: RunConfig, resume: bool = False, log: Callable[[str], None] = print) -> list[float]:
    """Train to ``config.train.steps``; returns the loss of every step (of this run and the ones
    it resumed)."""
    settings = config.train
    last = os.path.join(config.out, "last.pt")
    if not resume and os.path.exists(last):
        raise DatasetStateError(f"{config.out} already holds a run ({last}); pass --resume to continue it, "
                                f"or set another `out`")
    rank, world, device = _distributed(settings.device)
    torch.manual_seed(settings.seed)  # the same initial weights in every process
    features = audio_features(config.data.audio_model).to(device)
    checkpoint = load_checkpoint(last) if resume else None
    if checkpoint:
        _check_same_run(config, checkpoint["config"], last)
        config = RunConfig.from_dict({**checkpoint["config"], "train": vars(settings)}, source=last)
        stats, tokenizer_weights = Stats.from_dict(checkpoint["stats"]), None
    else:
        config, stats, tokenizer_weights = _initial_state(config, features)
    model = build_model(config, stats)
    if tokenizer_weights is not None:
        model.get_submodule("tokenizer").load_state_dict(tokenizer_weights)
    model.to(device)
    stats = stats.to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.lr,
                                  weight_decay=settings.weight_decay)
    # The loader draws its base seed from torch's generator when its iterator is made: make it
    # before the generator is set to the run's (or the checkpoint's) state.
    batches = iter(make_loader(training_stream(config.data), config.data))
    step, losses = 0, []
    if checkpoint:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        step, losses = checkpoint["step"], list(checkpoint["losses"])
        if rank == 0:  # the random state saved is process 0's
            torch.set_rng_state(checkpoint["rng"])
            if device.type == "cuda" and "cuda_rng" in checkpoint:  # dropout and code restarts on the GPU
                torch.cuda.set_rng_state(checkpoint["cuda_rng"], device)
        else:  # a stream no process has drawn from (a copy of process 0's would repeat its dropout)
            torch.manual_seed(settings.seed + rank + world * step)
        log(f"resumed {last} at step {step}")
        if step >= settings.steps:  # nothing written: the run folder stays as the checkpoint left it
            log(f"nothing to train: the run is at step {step} and train.steps is {settings.steps}; "
                f"raise train.steps to continue it")
            if world > 1:
                dist.destroy_process_group()
            return losses
    else:
        torch.manual_seed(settings.seed + rank)  # dropout and code restarts differ between processes
    # a fine-tuned wav2vec 2.0 skips layers at random in training (LayerDrop): they get no gradient
    wrapped = (nn.parallel.DistributedDataParallel(model, find_unused_parameters=bool(config.data.audio_model))
               if world > 1 else model)
    if rank == 0:
        os.makedirs(config.out, exist_ok=True)
        with open(os.path.join(config.out, "config.toml"), "w") as f:
            f.write(to_toml(config))
        if not checkpoint:  # a new run: the log of one stopped before its first checkpoint is not continued
            open(os.path.join(config.out, "log.jsonl"), "w").close()

    def save():
        random_state = {"rng": torch.get_rng_state()}
        if device.type == "cuda":
            random_state["cuda_rng"] = torch.cuda.get_rng_state(device)
        save_checkpoint(last, config=config.to_dict(), step=step, model=model.state_dict(),
                        optimizer=optimizer.state_dict(), stats=stats.to("cpu").to_dict(), losses=losses,
                        **random_state)

    for _ in range(step):  # replay the window stream to where the checkpoint stopped
        next(batches)
    model.train()
    started, first_step = time.perf_counter(), step
    sources: dict[str, int] = {}  # where the style references of this run's windows came from
    while step < settings.steps:
        raw = next(batches)
        for source in raw["reference_source"]:
            sources[source] = sources.get(source, 0) + 1
        batch = prepare_batch(raw, features, stats, device)
        for group in optimizer.param_groups:
            group["lr"] = settings.lr * min(1.0, (step + 1) / max(settings.warmup, 1))
        with mixed_precision(device, settings.amp):
            loss, values = wrapped(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        step += 1
        mean_loss = loss.detach().float()
        if world > 1:
            dist.all_reduce(mean_loss)
            mean_loss /= world
        losses.append(float(mean_loss))
        if rank == 0 and (step % settings.log_every == 0 or step == settings.steps):
            rate = (step - first_step) * config.data.batch_size * world / (time.perf_counter() - started)
            record = {"step": step, "loss": losses[-1], **values, **reference_fractions(sources),
                      "windows_per_s": round(rate, 1)}
            with open(os.path.join(config.out, "log.jsonl"), "a") as f:
                f.write(json.dumps(record) + "\n")
            log(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))
        if rank == 0 and (step % settings.checkpoint_every == 0 or step == settings.steps):
            save()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return losses
