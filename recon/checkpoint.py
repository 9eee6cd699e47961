"""Reading released checkpoints safely and checking them against the network that will hold them."""

from __future__ import annotations

import torch

from voxmesh.schemas.errors import ConfigError, MissingFileError


def read_tensors(path: str, missing: str = "") -> dict:
    """The dict stored in ``path``, read with ``torch.load(weights_only=True)``: a file that holds
    anything but tensors and plain containers (a pickle that would run code) is refused, as is a
    file that is no checkpoint at all, with one line naming it. ``missing``: what to do when there
    is no such file."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise MissingFileError(f"no checkpoint at {path}{'; ' + missing if missing else ''}") from None
    except Exception as error:  # noqa: BLE001 - torch raises several types for a bad file
        raise ConfigError(f"{path}: not a plain tensor checkpoint ({_first_reason(error)}); voxmesh does not "
                          f"unpickle arbitrary objects") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a dict of tensors, found {type(raw).__name__}")
    return raw


def _first_reason(error: Exception) -> str:
    """The line of torch's message that says what is wrong (for a refused pickle, the unpickler's
    line, not its advice to load the file unsafely)."""
    text = str(error)
    _, marker, unpickler = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (unpickler if marker else text).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def check_state_dict(path: str, state: dict, network: torch.nn.Module, expected: str) -> None:
    """Raise ConfigError, one line naming ``path``, the first missing and unexpected keys (or the
    first wrong shape) and the ``expected`` network, unless ``state`` fits ``network`` exactly.
    BatchNorm's ``num_batches_tracked`` counters may be absent (they do not change inference)."""
    own = network.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise ConfigError(f"{path}: not {expected}: {len(missing)} keys missing (first: "
                          f"{missing[0] if missing else 'none'}), {len(unexpected)} unexpected (first: "
                          f"{unexpected[0] if unexpected else 'none'})")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor) or value.shape != own[key].shape:
            found = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ConfigError(f"{path}: {key} is {found}, {expected} has {tuple(own[key].shape)}")
