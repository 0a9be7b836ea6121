"""``${VAR}`` and ``${VAR:-default}`` in every string value, from an injected environment.

As in the shell, the default applies when the variable is unset or empty; ``$$`` is a literal
``$``; a ``$`` followed by anything else is kept as it is. Keys are never expanded. Errors name the
key path and the variable, never the value around it: the value may be a secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fotawatch.config._paths import index_path, key_path
from fotawatch.errors import ConfigError

__all__ = ["expand_env"]

_REFERENCE = re.compile(
    r"\$(?:(?P<escape>\$)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}"
    r"|(?P<malformed>\{))"
)


def expand_env(data: Any, environ: Mapping[str, str], path: str = "") -> Any:
    """A copy of ``data`` with every string value expanded."""
    if isinstance(data, dict):
        return {key: expand_env(value, environ, key_path(path, key)) for key, value in data.items()}
    if isinstance(data, list):
        return [expand_env(item, environ, index_path(path, i)) for i, item in enumerate(data)]
    if isinstance(data, str) and "$" in data:
        return _REFERENCE.sub(lambda match: _replace(match, environ, path), data)
    return data


def _replace(match: re.Match[str], environ: Mapping[str, str], path: str) -> str:
    if match["escape"]:
        return "$"
    name = match["name"]
    if name is None:
        raise ConfigError(path, "malformed ${...} reference: write ${NAME} or ${NAME:-default}, "
                          "and $$ for a literal $")
    value = environ.get(name, "")
    if value or match["default"] is not None:
        return value or (match["default"] or "")
    if name in environ:
        raise ConfigError(path, f"environment variable {name} is empty")
    raise ConfigError(path, f"environment variable {name} is not set")
