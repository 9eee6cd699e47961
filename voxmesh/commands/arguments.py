"""Checks of command-line arguments that more than one verb takes."""

from __future__ import annotations

import os

from voxmesh.schemas.errors import ConfigError


def check_file_name(path: str, suffix: str, option: str) -> None:
    """ConfigError naming ``option`` unless ``path`` names a ``suffix`` file (any case), not a folder."""
    if not path.lower().endswith(suffix) or os.path.isdir(path):
        raise ConfigError(f"{option} {path}: give the {suffix} file to write")
