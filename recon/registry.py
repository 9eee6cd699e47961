"""Reconstruction backends by name, from the entry-point group ``voxmesh.recon_backends``.

A backend in another package registers itself in its own ``setup.py``::

    entry_points={"voxmesh.recon_backends": ["mybackend = mypackage.module:MyBackend"]}
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from voxmesh.schemas.errors import UserError

from .base import ReconstructionBackend

GROUP = "voxmesh.recon_backends"


class BackendUnavailable(UserError, RuntimeError):
    """A backend that is unknown or cannot run here; the message says what to do."""


def backend_classes() -> dict[str, type[ReconstructionBackend] | BackendUnavailable]:
    """Every registered backend by name: its class, or why it cannot be loaded (one package that
    fails to import must not hide the others)."""
    loaded: dict[str, type[ReconstructionBackend] | BackendUnavailable] = {}
    for entry in sorted(entry_points(group=GROUP), key=lambda ep: ep.name):
        try:
            loaded[entry.name] = _load(entry)
        except BackendUnavailable as error:
            loaded[entry.name] = error
    return loaded


def _load(entry: EntryPoint) -> type[ReconstructionBackend]:
    """The backend class an entry point names; BackendUnavailable when it cannot be imported, is
    not a backend, or calls itself by another name (the dataset and its samples would disagree)."""
    try:
        cls = entry.load()
    except Exception as error:  # noqa: BLE001 - whatever the package raises on import
        raise BackendUnavailable(f"{entry.value} cannot be imported ({type(error).__name__}: {error}); fix or "
                                 f"reinstall the package that registers backend {entry.name!r}") from None
    if not (isinstance(cls, type) and issubclass(cls, ReconstructionBackend)):
        raise BackendUnavailable(f"{entry.value} is not a ReconstructionBackend subclass; register the class")
    if cls.name != entry.name:
        raise BackendUnavailable(f"{entry.value} is named {cls.name!r} but registered as {entry.name!r}; give its "
                                 f"`name` and its entry point the same name")
    return cls


def backend_class(name: str, options: dict[str, str] | None = None) -> type[ReconstructionBackend]:
    """The backend class called ``name``, checked to be runnable here with ``options``; raises
    BackendUnavailable."""
    matches = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not matches:
        known = ", ".join(sorted(ep.name for ep in entry_points(group=GROUP))) or "none"
        raise BackendUnavailable(f"unknown reconstruction backend {name!r} (registered: {known}); check the "
                                 f"name, or install the package that registers it under the entry-point "
                                 f"group {GROUP} (voxmesh's own with `pip install -e .`)")
    cls = _load(matches[0])
    unknown = sorted(set(options or {}) - set(cls.option_names))
    if unknown:
        accepted = ", ".join(f"{name}.{key}" for key in cls.option_names) or "none"
        raise BackendUnavailable(f"--backend-option {name}.{unknown[0]}: backend {name!r} has no option "
                                 f"{unknown[0]!r} (accepted: {accepted})")
    reason = cls.unavailable_reason(options)
    if reason:
        raise BackendUnavailable(f"backend {name!r} cannot run here: {reason}")
    return cls


def create_backend(name: str, options: dict[str, str] | None = None) -> ReconstructionBackend:
    """A new instance of the backend ``name`` with its options (not yet set up)."""
    return backend_class(name, options)(options=options)
