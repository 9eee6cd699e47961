"""Run configuration: one TOML file per run, sections matching the dataclasses below.

```toml
kind = "probabilistic"            # tokenizer | codetalker_vq | probabilistic | codetalker | faceformer
out = "runs/probabilistic"        # run folder: last.pt, log.jsonl, config.toml
tokenizer_checkpoint = "runs/rvq/last.pt"   # probabilistic (a tokenizer) and codetalker (a codetalker_vq)

[data]        # DataConfig
[tokenizer]   # TokenizerConfig (kind = "tokenizer"; the probabilistic generator takes it from its tokenizer)
[codetalker_vq]  # CodeTalkerVQConfig (kind = "codetalker_vq", CodeTalker's stage 1; codetalker takes it from it)
[generator]   # GeneratorConfig
[train]       # TrainSettings
```

Any value can be overridden on the command line with ``--set section.name=value`` (the value
in TOML syntax; a bare word is a string).
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Sequence

from voxmesh.schemas.errors import ConfigError, MissingFileError

from .codetalker_vq import CodeTalkerVQConfig
from .data import DataConfig
from .generators import GeneratorConfig
from .tokenizer import TokenizerConfig

KINDS = ("tokenizer", "codetalker_vq", "probabilistic", "codetalker", "faceformer")
TOKENIZER_KIND = {"probabilistic": "tokenizer", "codetalker": "codetalker_vq"}
"""The generators trained on a frozen stage 1, and the kind of checkpoint each one needs."""
FINE_TUNE_SPEECH = ("faceformer", "codetalker")
"""The kinds whose pretrained speech model (``data.audio_model``) trains with them, as published."""


@dataclasses.dataclass
class TrainSettings:
    steps: int = 2000
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup: int = 100            # steps of linear learning-rate warm-up
    grad_clip: float = 1.0
    log_every: int = 50
    checkpoint_every: int = 500
    device: str = "auto"         # auto | cpu | cuda
    amp: bool = True             # bfloat16 autocast on CUDA (ignored on CPU)
    seed: int = 0


@dataclasses.dataclass
class RunConfig:
    kind: str
    out: str
    tokenizer_checkpoint: str = ""
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = dataclasses.field(default_factory=TokenizerConfig)
    codetalker_vq: CodeTalkerVQConfig = dataclasses.field(default_factory=CodeTalkerVQConfig)
    generator: GeneratorConfig = dataclasses.field(default_factory=GeneratorConfig)
    train: TrainSettings = dataclasses.field(default_factory=TrainSettings)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> RunConfig:
        values = dict(values)
        for name in SECTIONS:
            values[name] = _section(name, values.get(name, {}), f"{source} [{name}]")
        unknown = set(values) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"{source}: unknown setting(s) {', '.join(sorted(unknown))}")
        for required in ("kind", "out"):
            if not values.get(required):
                raise ConfigError(f"{source}: `{required}` is required")
        config = cls(**values)
        if config.kind not in KINDS:
            raise ConfigError(f"{source}: kind must be one of {', '.join(KINDS)}, not {config.kind!r}")
        if config.kind in TOKENIZER_KIND and not config.tokenizer_checkpoint:
            raise ConfigError(f"{source}: kind {config.kind} needs tokenizer_checkpoint (the last.pt of a trained "
                              f"{TOKENIZER_KIND[config.kind]})")
        if not config.data.dataset:
            raise ConfigError(f"{source}: data.dataset is required (the folder written by `voxmesh build`)")
        return config


SECTIONS = {"data": DataConfig, "tokenizer": TokenizerConfig, "codetalker_vq": CodeTalkerVQConfig,
            "generator": GeneratorConfig, "train": TrainSettings}


# Values below which a setting could only fail later (a division by zero, an empty stack) or train
# nothing; the settings not named here take any value of their type.
AT_LEAST = {
    "data.window": 1, "data.batch_size": 1, "data.workers": 0, "data.shuffle_buffer": 1, "data.stats_shards": 1,
    "tokenizer.hidden": 1, "tokenizer.latent": 1, "tokenizer.levels": 1, "tokenizer.codebook_size": 1,
    "tokenizer.downsample": 0, "tokenizer.factors": 1,
    "codetalker_vq.factors": 1, "codetalker_vq.code_dim": 1, "codetalker_vq.codebook_size": 1,
    "codetalker_vq.layers": 1, "codetalker_vq.heads": 1, "codetalker_vq.intermediate": 1,
    "generator.dim": 1, "generator.layers": 1, "generator.heads": 1, "generator.period": 1,
    "generator.speech_layers": 0, "generator.depth_layers": 0,
    "train.steps": 1, "train.warmup": 0, "train.log_every": 1, "train.checkpoint_every": 1,
}
ABOVE_ZERO = ("train.lr", "train.grad_clip")
TYPE_NAMES = {float: "a number", int: "an integer", str: "a string"}  # of the settings' scalar types
CHOICES = {"train.device": ("auto", "cpu", "cuda"), "codetalker_vq.positional": ("released", "sequence")}


def _section(section: str, values: dict, source: str):
    cls = SECTIONS[section]
    names = {field.name: field for field in dataclasses.fields(cls)}
    unknown = set(values) - set(names)
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(names)}")
    return cls(**{name: _checked(f"{section}.{name}", value, names[name].default, source)
                  for name, value in values.items()})


def _checked(name: str, value, default, source: str):
    """``value`` of the setting ``name``, of its default's type (an int where a float is expected
    becomes one) and within the limits above; ConfigError naming it otherwise."""
    def refuse(expected: str):
        raise ConfigError(f"{source}: {name} = {value!r}: expected {expected}")
    if isinstance(default, bool) or isinstance(value, bool):
        if type(value) is not type(default):
            refuse("true or false" if isinstance(default, bool) else type(default).__name__)
    elif isinstance(default, float) and isinstance(value, int):
        value = float(value)
    elif default is not dataclasses.MISSING and type(value) is not type(default):
        refuse(TYPE_NAMES[type(default)])
    if name in AT_LEAST and value < AT_LEAST[name]:
        refuse(f"{AT_LEAST[name]} or more")
    if name in ABOVE_ZERO and not value > 0:
        refuse("a number above 0")
    if name in CHOICES and value not in CHOICES[name]:
        refuse(f"one of {', '.join(CHOICES[name])}")
    return value


def apply_override(values: dict, override: str) -> None:
    """Apply ``section.name=value`` (or ``name=value``) to the parsed TOML ``values``."""
    path, separator, text = override.partition("=")
    if not separator:
        raise ConfigError(f"--set {override}: expected name=value, e.g. train.steps=100")
    try:
        value = tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        value = text
    *sections, name = path.strip().split(".")
    target = values
    for section in sections:
        target = target.setdefault(section, {})
    target[name] = value


def load_config(path: str, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a run's TOML file and apply ``--set`` overrides."""
    try:
        with open(path, "rb") as f:
            values = tomllib.load(f)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: {error}") from error
    except FileNotFoundError as error:
        raise MissingFileError(f"{path}: no such file; give a run's TOML file (examples in models/configs/)") from error
    for override in overrides:
        apply_override(values, override)
    source = f"{path} with --set {' '.join(overrides)}" if overrides else path  # a typo may be in either
    return RunConfig.from_dict(values, source=source)


def to_toml(config: RunConfig) -> str:
    """The config as TOML (scalars only, as every field is)."""
    def line(name, value):
        text = ("true" if value else "false") if isinstance(value, bool) else (
            json.dumps(value) if isinstance(value, str) else repr(value))
        return f"{name} = {text}"
    values = config.to_dict()
    lines = [line(name, value) for name, value in values.items() if name not in SECTIONS]
    for section in SECTIONS:
        lines += ["", f"[{section}]"] + [line(name, value) for name, value in values[section].items()]
    return "\n".join(lines) + "\n"
