"""Nested settings (a build's or a training run's, as their JSON and TOML records hold them) as
dotted names, so that a message can name each one that differs between two records."""

from __future__ import annotations


def flatten(settings: dict, prefix: str = "") -> dict:
    """``{"clip_rules": {"min_seconds": 2}}`` -> ``{"clip_rules.min_seconds": 2}``."""
    flat = {}
    for name, value in settings.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def differences(then: dict, now: dict) -> list[str]:
    """``"name 'a' there, 'b' now"`` for every dotted name whose value differs between two records."""
    then, now = flatten(then), flatten(now)
    return [f"{name} {then.get(name)!r} there, {now.get(name)!r} now" for name in sorted(set(then) | set(now))
            if then.get(name) != now.get(name)]
