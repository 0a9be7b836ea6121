"""Dotted key paths as users read them: ``alerts.webhooks[1].url``.

Keys come from the document, so one that is not short printable text (a newline, a control
character, a megabyte of text) is shown quoted and cut: an error stays one short line.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["format_loc", "index_path", "key_path"]

_MAX_KEY = 64


def _shown(key: object) -> str:
    text = str(key)
    if text.isprintable() and len(text) <= _MAX_KEY:
        return text
    return repr(text[:_MAX_KEY]) + ("..." if len(text) > _MAX_KEY else "")


def key_path(parent: str, key: object) -> str:
    return f"{parent}.{_shown(key)}" if parent else _shown(key)


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
