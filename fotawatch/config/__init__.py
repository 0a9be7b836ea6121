"""YAML -> validated, frozen ``Settings``; secrets from env, ``*_file`` keys or systemd credentials.

The pipeline, each step failing with one ``ConfigError(key, problem)`` line that never holds a
secret value:

1. read at most 1 MiB, decode strict UTF-8;
2. parse YAML safely (limits on aliases, depth and expanded size; duplicate keys refused);
3. expand ``${VAR}``, ``${VAR:-default}`` and ``$$`` in every string value;
4. resolve secrets: ``X``, else ``X_file``, else ``$CREDENTIALS_DIRECTORY/<name>``;
5. validate into the frozen pydantic models (unknown keys refused, relative paths resolved
   against the config file's directory).

``python -m fotawatch.config schema`` prints the JSON schema committed as
``config/fotawatch.schema.json``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from fotawatch.config._errors import SECRET_KEYS, config_error
from fotawatch.config._expand import expand_env
from fotawatch.config._secrets import CREDENTIAL_NAMES, resolve_secrets
from fotawatch.config._types import is_loopback, parse_duration
from fotawatch.config._yaml import MAX_BYTES, decode, parse_yaml, read_file
from fotawatch.config.models import (
    AccountSettings,
    AlertsSettings,
    CampaignSettings,
    LoggingSettings,
    MetricsSettings,
    PollingSettings,
    RetrySettings,
    Settings,
    SlackSettings,
    ThingSpaceSettings,
    TransitionFilter,
    WebhookSettings,
)
from fotawatch.errors import ConfigError

__all__ = [
    "CREDENTIAL_NAMES",
    "MAX_BYTES",
    "SCHEMA_ID",
    "SECRET_KEYS",
    "AccountSettings",
    "AlertsSettings",
    "CampaignSettings",
    "LoggingSettings",
    "MetricsSettings",
    "PollingSettings",
    "RetrySettings",
    "Settings",
    "SlackSettings",
    "ThingSpaceSettings",
    "TransitionFilter",
    "WebhookSettings",
    "config_file_warnings",
    "json_schema",
    "load_settings",
    "parse_duration",
    "parse_settings",
    "settings_warnings",
]

SCHEMA_ID = "https://github.com/fotawatch/fotawatch/config/fotawatch.schema.json"


def load_settings(path: Path, *, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, expand, resolve and validate the config file at ``path``."""
    source = str(path)
    text = decode(read_file(path), source)
    env = os.environ if environ is None else environ
    return parse_settings(text, environ=env, base_dir=path.absolute().parent, source=source)


def parse_settings(
    text: str, *, environ: Mapping[str, str], base_dir: Path, source: str = "<config>"
) -> Settings:
    """Validate a config document; relative paths resolve against ``base_dir``."""
    data = expand_env(parse_yaml(text, source), environ)
    resolve_secrets(data, environ, base_dir)
    try:
        return Settings.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as err:
        raise config_error(err) from err


def config_file_warnings(path: Path) -> list[str]:
    """Problems with the file's permissions that do not stop fotawatch from starting."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return []
    warnings = []
    if mode & 0o004 and _inline_secrets(path):
        warnings.append(f"config file is readable by other users (mode {mode:04o}) and holds "
                        "secrets inline; use *_file keys, ${VAR} or systemd credentials")
    if mode & 0o022:
        warnings.append(f"config file is writable by its group or other users (mode {mode:04o}); "
                        "they can change where fotawatch sends credentials and alerts")
    return warnings


def _inline_secrets(path: Path) -> bool:
    """True when a secret key holds a literal value (not ${VAR}) in the file itself."""
    try:
        text = read_file(path).decode("utf-8", errors="replace")
        data = parse_yaml(text, str(path))
    except (ConfigError, OSError):
        return False
    return _has_inline_secret(data)


def _has_inline_secret(node: object) -> bool:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in SECRET_KEYS and key != "headers" and isinstance(value, str):
                if not value.strip().startswith("${"):
                    return True
            elif key == "headers" and isinstance(value, dict):
                if any(isinstance(v, str) and "${" not in v for v in value.values()):
                    return True
            elif _has_inline_secret(value):
                return True
    elif isinstance(node, list):
        return any(_has_inline_secret(item) for item in node)
    return False


def settings_warnings(settings: Settings) -> list[str]:
    """Valid but suspicious settings, for ``check-config`` and the startup log."""
    warnings = []
    if not settings.campaigns and not any(a.discover for a in settings.accounts):
        warnings.append("campaigns: no campaigns listed and no account to discover; "
                        "nothing will be polled")
    url = urlsplit(settings.thingspace.base_url)
    if url.scheme == "http" and not is_loopback(url.hostname or ""):
        warnings.append("thingspace.base_url: plain http to a non-loopback host; "
                        "credentials would cross the network unencrypted")
    return warnings


def json_schema() -> dict[str, Any]:
    """The JSON schema of the config file, for editors and ``config/fotawatch.schema.json``."""
    schema = Settings.model_json_schema(mode="validation")
    schema["title"] = "fotawatch configuration"
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}
