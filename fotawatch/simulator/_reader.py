"""A checked view of one YAML/JSON mapping: typed getters that name the key path on error.

Every getter marks its key as seen; ``finish()`` then rejects whatever was not read, so a typo in
a scenario fails loudly (``campaigns[2].timline: unknown key``) instead of being ignored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["Reader", "path_of"]


def path_of(parent: str, key: str | int) -> str:
    """``parent.key`` or ``parent[index]``; a bare key at the top level."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


class Reader:
    """Typed, path-aware access to one mapping of a scenario."""

    __slots__ = ("_data", "_path", "_seen")

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, Mapping):
            kind = type(data).__name__
            # TRY004: a scenario's every error is a ValueError naming the key, by contract
            raise ValueError(f"{path or 'scenario'}: expected a mapping, got {kind}")  # noqa: TRY004
        self._data: Mapping[Any, Any] = data
        self._path = path
        self._seen: set[str] = set()

    @property
    def path(self) -> str:
        return self._path

    def error(self, key: str, problem: str) -> ValueError:
        return ValueError(f"{path_of(self._path, key)}: {problem}")

    def has(self, key: str) -> bool:
        return key in self._data

    def raw(self, key: str) -> Any:
        self._seen.add(key)
        return self._data.get(key)

    def text(self, key: str, default: str | None = None) -> str:
        value = self.raw(key)
        if value is None:
            if default is None:
                raise self.error(key, "is required")
            return default
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.error(key, f"expected a string, got {type(value).__name__}")
        if value == "":
            raise self.error(key, "must not be empty")
        return str(value)

    def number(self, key: str, default: float, *, minimum: float = 0.0) -> float:
        value = self.optional_number(key, minimum=minimum)
        return default if value is None else value

    def required_number(self, key: str, *, minimum: float = 0.0) -> float:
        value = self.optional_number(key, minimum=minimum)
        if value is None:
            raise self.error(key, "is required")
        return value

    def optional_number(self, key: str, *, minimum: float = 0.0) -> float | None:
        value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"expected a number, got {type(value).__name__}")
        if value < minimum:
            raise self.error(key, f"must be >= {minimum:g}")
        return float(value)

    def integer(self, key: str, default: int, *, minimum: int = 0) -> int:
        value = self.optional_integer(key, minimum=minimum)
        return default if value is None else value

    def optional_integer(self, key: str, *, minimum: int = 0) -> int | None:
        value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {type(value).__name__}")
        if value < minimum:
            raise self.error(key, f"must be >= {minimum}")
        return value

    def flag(self, key: str, *, default: bool) -> bool:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {value!r}")
        return value

    def choice(self, key: str, default: str | None, choices: tuple[str, ...]) -> str:
        """One of ``choices``; required when ``default`` is None."""
        value = self.text(key, default)
        if value not in choices:
            raise self.error(key, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def date(self, key: str, default: dt.date) -> dt.date:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            raise self.error(key, f"expected a date YYYY-MM-DD, got {value!r}") from None

    def items(self, key: str) -> Iterator[tuple[str, Any]]:
        """(path, element) for each element of an optional list."""
        value = self.raw(key)
        if value is None:
            return iter(())
        if not isinstance(value, list | tuple):
            raise self.error(key, f"expected a list, got {type(value).__name__}")
        path = path_of(self._path, key)
        return ((path_of(path, index), element) for index, element in enumerate(value))

    def child(self, key: str) -> Reader | None:
        value = self.raw(key)
        return None if value is None else Reader(value, path_of(self._path, key))

    def skip(self, key: str) -> None:
        self._seen.add(key)

    def rest(self) -> dict[str, Any]:
        """Every key not read so far (for mappings whose other keys are data)."""
        rest = {str(k): v for k, v in self._data.items() if str(k) not in self._seen}
        self._seen.update(rest)
        return rest

    def finish(self) -> None:
        unknown = sorted(str(k) for k in self._data if str(k) not in self._seen)
        if unknown:
            raise self.error(unknown[0], "unknown key")
