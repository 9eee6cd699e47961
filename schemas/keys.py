"""Sample keys and the ids they are made of.

A key is ``{speaker}_{video}_{utterance}_{track:03d}_{clip:03d}``. Keys carry no dots (WebDataset
splits member names at the first dot) and are built only from sanitized ids, so that no file name
or manifest entry can steer where anything is written.
"""

from __future__ import annotations

import re

MAX_ID_LENGTH = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")
_KEY = re.compile(r"[A-Za-z0-9-]{1,64}_[A-Za-z0-9-]{1,64}_[A-Za-z0-9-]{1,64}_[0-9]{3}_[0-9]{3}")


def sanitize_id(raw: str) -> str:
    """Map an arbitrary id (a folder or file name, a manifest field) to ``[A-Za-z0-9-]{1,64}``.

    Runs of other characters (``_``, ``.``, ``/``, spaces, ...) become one ``-``; leading and
    trailing dashes are dropped; the result is cut to 64 characters. Raises ``ValueError`` when
    nothing usable is left, so that an id can never be empty.
    """
    cleaned = _UNSAFE.sub("-", raw).strip("-")[:MAX_ID_LENGTH].strip("-")
    if not cleaned:
        raise ValueError(f"id {raw!r} has no letters or digits; rename the file or fix the manifest")
    return cleaned


def make_key(speaker: str, video: str, utterance: str, track: int, clip: int) -> str:
    """The sample key; the ids must already be sanitized (checked)."""
    key = f"{speaker}_{video}_{utterance}_{track:03d}_{clip:03d}"
    if not is_valid_key(key):
        raise ValueError(f"cannot build a sample key from {(speaker, video, utterance, track, clip)!r}")
    return key


def is_valid_key(key: str) -> bool:
    return bool(_KEY.fullmatch(key))
