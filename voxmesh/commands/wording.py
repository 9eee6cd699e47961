"""How the verbs word what they print."""

from __future__ import annotations


def count(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1: ``count(1, "shard")`` is "1 shard"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
