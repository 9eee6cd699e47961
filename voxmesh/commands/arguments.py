"""Checks of command-line arguments that more than one verb takes."""

from __future__ import annotations

import os

from voxmesh.schemas import storage
from voxmesh.schemas.errors import ConfigError


def check_file_name(path: str, suffix: str, option: str) -> None:
    """ConfigError naming ``option`` unless ``path`` names a ``suffix`` file (any case), not a folder."""
    if not path.lower().endswith(suffix) or os.path.isdir(path):
        raise ConfigError(f"{option} {path}: give the {suffix} file to write")


def check_local_output(path: str, option: str) -> None:
    """ConfigError naming ``option`` when ``path`` is an object-store URI: the verbs other than
    ``build`` and ``stats`` write local files only (a URI would become a local folder named
    ``s3:``)."""
    if storage.is_remote(path):
        raise ConfigError(f"{option} {path}: give a local path (this command writes local files), then copy what "
                          f"it writes to the object store")
