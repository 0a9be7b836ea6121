"""Secrets from the YAML value, an ``X_file`` key, or a systemd credential, in that order.

Each secret key ``X`` may be given inline (usually as ``${ENV_VAR}``) or as ``X_file: PATH``
(relative paths resolve against the config file's directory; one trailing newline is stripped).
When neither is present, the secrets that have a credential name are read from
``$CREDENTIALS_DIRECTORY/<name>``, where systemd's ``LoadCredential=`` puts them; a secret found
nowhere stays absent, and validation reports it with ``missing_secret``. Values read from files
are used verbatim: ``${...}`` is expanded only in the YAML. Errors name the
key and the file and the OS reason, never the content.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fotawatch.config._paths import index_path, key_path
from fotawatch.errors import ConfigError

__all__ = [
    "CREDENTIAL_NAMES",
    "MAX_SECRET_BYTES",
    "missing_secret",
    "read_secret_file",
    "resolve_secrets",
]

CREDENTIAL_NAMES: Mapping[str, str] = {
    "thingspace.client_id": "thingspace-client-id",
    "thingspace.client_secret": "thingspace-client-secret",
    "thingspace.username": "thingspace-username",
    "thingspace.password": "thingspace-password",
    "alerts.slack.webhook_url": "slack-webhook-url",
    "state_dsn": "state-dsn",
}
"""Secret key path -> systemd credential name looked up in ``$CREDENTIALS_DIRECTORY``."""

MAX_SECRET_BYTES = 64 * 1024
_THINGSPACE_SECRETS = ("client_id", "client_secret", "username", "password")


@dataclass(frozen=True, slots=True, kw_only=True)
class _Sources:
    base_dir: Path
    credentials_dir: Path | None


def resolve_secrets(data: dict[str, Any], environ: Mapping[str, str], base_dir: Path) -> None:
    """Replace each ``X_file`` by ``X``; fill absent secrets from systemd credentials. In place."""
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    credentials_dir = Path(credentials) if credentials else None
    sources = _Sources(base_dir=base_dir, credentials_dir=credentials_dir)
    if data.get("thingspace") is None:
        data["thingspace"] = {}
    thingspace = data["thingspace"]
    if isinstance(thingspace, dict):
        for name in _THINGSPACE_SECRETS:
            _resolve(thingspace, "thingspace", name, sources)
    alerts = data.get("alerts")
    if isinstance(alerts, dict):
        _resolve_alerts(alerts, sources)
    # A state-dsn credential applies only where the config does not choose SQLite explicitly.
    if "state_path" not in data or "state_dsn_file" in data:
        _resolve(data, "", "state_dsn", sources)


def _resolve_alerts(alerts: dict[str, Any], sources: _Sources) -> None:
    slack = alerts.get("slack")
    if isinstance(slack, dict):
        _resolve(slack, "alerts.slack", "webhook_url", sources)
    webhooks = alerts.get("webhooks")
    if isinstance(webhooks, list):
        for index, webhook in enumerate(webhooks):
            if isinstance(webhook, dict):
                _resolve(webhook, index_path("alerts.webhooks", index), "url", sources)


def _resolve(section: dict[str, Any], path: str, name: str, sources: _Sources) -> None:
    file_name = f"{name}_file"
    inline, file_value = section.get(name), section.pop(file_name, None)
    if inline is not None and file_value is not None:
        raise ConfigError(key_path(path, file_name), f"set either {name} or {file_name}, not both")
    if inline is not None:
        return
    if file_value is not None:
        section[name] = _read_path_value(file_value, key_path(path, file_name), sources.base_dir)
        return
    credential = CREDENTIAL_NAMES.get(key_path(path, name))
    value = _read_credential(credential, key_path(path, name), sources.credentials_dir)
    if value is not None:
        section[name] = value


def missing_secret(key: str) -> str:
    """What to say when the secret at ``key`` came from nowhere."""
    name = key.rsplit(".", 1)[-1]
    credential = CREDENTIAL_NAMES.get(key)
    if credential is None:
        return f"missing (set {name} or {name}_file)"
    return f"missing (set {name}, {name}_file, or the systemd credential {credential})"


def _read_path_value(value: object, key: str, base_dir: Path) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(key, "must be the path of a file")
    path = Path(value).expanduser()
    return read_secret_file(path if path.is_absolute() else base_dir / path, key)


def _read_credential(credential: str | None, key: str, directory: Path | None) -> str | None:
    if credential is None or directory is None:
        return None
    path = directory / credential
    if not path.exists():
        return None
    return read_secret_file(path, key, label=f"systemd credential {credential} ({path})")


def read_secret_file(path: Path, key: str, *, label: str | None = None) -> str:
    """The file's text minus one trailing newline; every failure names ``key`` and the file."""
    label = label or str(path)
    try:
        _check_regular(path, key, label)
        with path.open("rb") as stream:
            data = stream.read(MAX_SECRET_BYTES + 1)
    except OSError as err:
        raise ConfigError(key, f"cannot read {label}: {err.strerror}") from err
    return _secret_text(data, key, label)


def _check_regular(path: Path, key: str, label: str) -> None:
    if not stat.S_ISREG(path.stat().st_mode):
        raise ConfigError(key, f"{label} is not a regular file")


def _secret_text(data: bytes, key: str, label: str) -> str:
    if len(data) > MAX_SECRET_BYTES:
        raise ConfigError(key, f"{label} is larger than {MAX_SECRET_BYTES // 1024} KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(key, f"{label} is not valid UTF-8") from err
    text = text.removesuffix("\n").removesuffix("\r") if text.endswith("\n") else text
    if not text:
        raise ConfigError(key, f"{label} is empty")
    return text
