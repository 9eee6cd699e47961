"""Reading weights files safely: tensors and plain containers only, never a pickle's code
(``torch.load(weights_only=True)``), and a file that is no checkpoint is one line naming it.
Used by every layer that reads weights (released checkpoints, trained models, metric networks)."""

from __future__ import annotations

from .errors import ConfigError, MissingFileError


def read_tensors(path: str, missing: str = "", keys: tuple[str, ...] = (), kind: str = "") -> dict:
    """The dict stored in ``path``, read with ``torch.load(weights_only=True)``: a file that holds
    anything but tensors and plain containers (a pickle that would run code) is refused, as is a
    file that is no checkpoint at all, or one without ``keys`` (then it is not ``kind``), with one
    line naming it. ``missing``: what to do when there is no such file."""
    import torch  # here, not at import: a build worker loads schemas but never torch

    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise MissingFileError(f"no checkpoint at {path}{'; ' + missing if missing else ''}") from None
    except OSError as error:  # a folder, no permission: the file is not the problem
        raise ConfigError(f"{path}: cannot be read ({error.strerror or error})") from None
    except Exception as error:  # noqa: BLE001 - torch raises several types for a bad file
        raise ConfigError(f"{path}: not a plain tensor checkpoint ({_first_reason(error)}); voxmesh does not "
                          f"unpickle arbitrary objects") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a dict of tensors, found {type(raw).__name__}")
    if not set(keys) <= set(raw):
        raise ConfigError(f"{path}: not {kind} (it lacks {', '.join(sorted(set(keys) - set(raw)))})")
    return raw


def _first_reason(error: Exception) -> str:
    """The line of torch's message that says what is wrong (for a refused pickle, the unpickler's
    line, not its advice to load the file unsafely)."""
    text = str(error)
    _, marker, unpickler = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (unpickler if marker else text).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"
