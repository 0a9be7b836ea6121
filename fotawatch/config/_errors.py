"""Turn a pydantic ``ValidationError`` into one ``ConfigError`` line.

The message is ours, not pydantic's: a short sentence per error type, the key path, and the
offending value only when the key cannot hold a secret. Unknown keys get a "did you mean" hint.
"""

from __future__ import annotations

import difflib
import types
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from fotawatch.config._paths import format_loc
from fotawatch.config._secrets import missing_secret
from fotawatch.config.models import Settings
from fotawatch.errors import ConfigError

__all__ = ["SECRET_KEYS", "config_error"]

SECRET_KEYS = frozenset(
    {"client_id", "client_secret", "username", "password", "webhook_url", "url", "headers",
     "state_dsn"}
)
"""Key names whose values, and everything below them, are never echoed in an error."""

_MESSAGES = {
    "missing": "required key is missing",
    "extra_forbidden": "unknown key",
    "string_type": "must be a string",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "set_type": "must be a list",
    "frozen_set_type": "must be a list",
    "too_short": "must not be empty",
    "string_too_short": "must not be empty",
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "literal_error": "must be one of {expected}",
    "enum": "must be one of {expected}",
    "path_type": "must be a path",
    "set_item_not_hashable": "must be a list of strings",
}
_HINTS = {"max_login_failures": "ThingSpace locks the user after 5 failed logins"}
_NO_ECHO = frozenset({"missing", "extra_forbidden", "value_error", "assertion_error"})


def config_error(err: ValidationError) -> ConfigError:
    """The first problem as a ``ConfigError``, saying how many more there are.

    Unknown keys come first: a misspelt key is often why another one is missing.
    """
    details = sorted(err.errors(include_url=False), key=lambda d: d["type"] != "extra_forbidden")
    first = details[0]
    problem = _problem(first)
    if len(details) > 1:
        more = len(details) - 1
        problem += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(format_loc(first["loc"]), problem)


def _problem(detail: ErrorDetails) -> str:
    kind, ctx, loc = detail["type"], detail.get("ctx", {}), detail["loc"]
    if kind in {"value_error", "assertion_error"}:
        return str(ctx.get("error", detail["msg"]))
    if kind == "missing" and _is_secret(loc):
        return missing_secret(format_loc(loc))
    template = _MESSAGES.get(kind)
    text = template.format(**{k: _number(v) for k, v in ctx.items()}) if template else detail["msg"]
    if kind == "extra_forbidden":
        return text + _suggestion(loc)
    hint = _HINTS.get(str(loc[-1])) if loc else None
    text += f" ({hint})" if hint and kind.startswith("less_than") else ""
    return text if kind in _NO_ECHO or _is_secret(loc) else f"{text}, got {_show(detail['input'])}"


def _is_secret(loc: tuple[int | str, ...]) -> bool:
    return any(part in SECRET_KEYS for part in loc if isinstance(part, str))


def _number(value: object) -> object:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _show(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _suggestion(loc: tuple[int | str, ...]) -> str:
    model = _model_at(loc[:-1])
    if model is None or not loc:
        return ""
    allowed = [field.alias or name for name, field in model.model_fields.items()]
    allowed += [f"{name}_file" for name in getattr(model, "secret_keys", ())]
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Settings
    for part in loc:
        if model is None or isinstance(part, int):
            continue
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        model = _inner_model(field.annotation) if field is not None else None
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in {Union, types.UnionType, tuple}:
        return next(filter(None, map(_inner_model, get_args(annotation))), None)
    return None
