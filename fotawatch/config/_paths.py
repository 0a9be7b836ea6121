"""Dotted key paths as users read them: ``alerts.webhooks[1].url``."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["format_loc", "index_path", "key_path"]


def key_path(parent: str, key: object) -> str:
    return f"{parent}.{key}" if parent else str(key)


def index_path(parent: str, index: int) -> str:
    return f"{parent}[{index}]"


def format_loc(loc: Iterable[int | str]) -> str:
    """A pydantic error location as a key path; ``[key]`` markers of dict keys are dropped."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path = index_path(path, part)
        elif part != "[key]":
            path = key_path(path, part)
    return path
