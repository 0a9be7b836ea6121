"""The validated settings: frozen pydantic models, unknown keys refused.

Durations and ``*_seconds`` values are float seconds. Secrets are ``SecretStr``. Paths are
resolved against the config file's directory when validation gets ``context={"base_dir": ...}``.
Checks that span several keys live in ``Settings._check`` so that they can name exact key paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, cast, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from fotawatch.config._paths import index_path
from fotawatch.config._types import (
    Account,
    BaseUrl,
    Duration,
    HeaderName,
    HeaderValue,
    ListenAddress,
    LogFormat,
    LogLevel,
    PostgresDsn,
    Regex,
    Secret,
    SinkName,
    SinkUrl,
    Status,
    StuckStatus,
    parse_listen,
)
from fotawatch.errors import ConfigError
from fotawatch.model import CampaignKey, TransitionKind

__all__ = [
    "DEFAULT_STUCK_AFTER",
    "AccountSettings",
    "AlertsSettings",
    "CampaignSettings",
    "FailureRateSettings",
    "HaSettings",
    "LoggingSettings",
    "MetricsSettings",
    "PollingSettings",
    "RetrySettings",
    "Settings",
    "SlackSettings",
    "ThingSpaceSettings",
    "TransitionFilter",
    "WebhookSettings",
]

DEFAULT_STUCK_AFTER: Mapping[StuckStatus, float] = {
    "CampaignRequestPending": 2 * 3600.0,
    "CampaignRequestQueued": 24 * 3600.0,
    "CampaignPreScheduled": 24 * 3600.0,
}


def _describe_input(schema: dict[str, Any], cls: type[Any]) -> None:
    """Make the JSON schema describe the YAML, not the model.

    Each secret ``X`` gets an ``X_file`` sibling; keys the loader fills in are not required.
    """
    secrets: tuple[str, ...] = cls.secret_keys
    for name in secrets:
        schema["properties"][f"{name}_file"] = {
            "type": "string",
            "description": f"Path of a file holding {name}; used instead of {name}.",
        }
    optional = {*secrets, *cls.filled_keys}
    required = [key for key in schema.pop("required", []) if key not in optional]
    if required:
        schema["required"] = required


def _is_section(annotation: Any) -> bool:
    """A mapping or list of settings (not a list of values such as ``kinds``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return get_origin(annotation) in {tuple, dict}


class _Section(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", hide_input_in_errors=True, allow_inf_nan=False,
        json_schema_extra=_describe_input,
    )
    secret_keys: ClassVar[tuple[str, ...]] = ()
    """Secret keys that may be given as ``X_file`` instead (resolved before validation)."""
    filled_keys: ClassVar[tuple[str, ...]] = ()
    """Required keys that the loader supplies when the YAML leaves them out."""

    @model_validator(mode="before")
    @classmethod
    def _null_is_empty(cls, data: Any) -> Any:
        """``alerts:`` with every line below commented out is null in YAML: read it as empty."""
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {
            key: value for key, value in data.items()
            if value is not None or key not in fields or not _is_section(fields[key].annotation)
        }


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base_dir = (info.context or {}).get("base_dir")
    value = value.expanduser()
    return base_dir / value if base_dir is not None and not value.is_absolute() else value


class RetrySettings(_Section):
    """Retries of one poll after timeouts, 5xx, 429 and connection errors."""

    attempts: int = Field(default=3, ge=1, le=10, description="Tries per poll.")
    backoff_initial_seconds: float = Field(default=0.5, gt=0, le=300)
    backoff_max_seconds: float = Field(default=30.0, gt=0, le=3600)
    retry_after_max_seconds: float = Field(
        default=120.0, ge=0, le=3600, description="Cap on honouring a Retry-After header."
    )


class ThingSpaceSettings(_Section):
    """The ThingSpace API and the credentials of the account that owns the campaigns."""

    secret_keys: ClassVar[tuple[str, ...]] = ("client_id", "client_secret", "username", "password")

    base_url: BaseUrl = "https://thingspace.verizon.com"
    client_id: Secret
    client_secret: Secret
    username: Secret
    password: Secret
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    max_concurrency: int = Field(default=8, ge=1, le=256)
    requests_per_second: float = Field(default=5.0, gt=0, le=1000)
    max_login_failures: int = Field(
        default=2, ge=1, le=3,
        description="Failed logins before logins stop; ThingSpace locks the user after 5.",
    )
    token_refresh_margin_seconds: float = Field(default=60.0, ge=0, le=3600)
    retry: RetrySettings = Field(default_factory=RetrySettings)


class PollingSettings(_Section):
    """How often campaigns, devices and accounts are polled."""

    interval_seconds: float = Field(default=300.0, ge=1)
    jitter_seconds: float = Field(
        default=15.0,
        ge=0,
        description="Spread of the campaigns' first polls (each keeps its phase); at most its"
        " interval.",
    )
    misfire_grace_seconds: float | None = Field(
        default=None, gt=0, description="How late a poll may still run; default: its interval."
    )
    final_confirmations: int = Field(default=1, ge=0, le=10)
    missing_interval_seconds: float = Field(default=3600.0, ge=1)
    devices_interval_seconds: float = Field(default=900.0, ge=0, description="0 disables.")
    discovery_interval_seconds: float = Field(default=600.0, ge=1)

    @field_validator("devices_interval_seconds")
    @classmethod
    def _zero_or_one_second(cls, value: float) -> float:
        return _zero_or_at_least_one(value)


def _zero_or_at_least_one(value: float) -> float:
    if 0 < value < 1:
        raise ValueError(f"must be 0 (disabled) or at least 1, got {value!r}")
    return value


class CampaignSettings(_Section):
    """One campaign to watch."""

    account: Account
    campaign_id: str = Field(alias="id", min_length=1)
    name: str | None = None
    interval_seconds: float | None = Field(default=None, ge=1)
    devices_interval_seconds: float | None = Field(
        default=None, ge=0, description="Override of polling.devices_interval_seconds; 0 disables."
    )

    @field_validator("devices_interval_seconds")
    @classmethod
    def _zero_or_one_second(cls, value: float | None) -> float | None:
        return None if value is None else _zero_or_at_least_one(value)

    @property
    def key(self) -> CampaignKey:
        return CampaignKey(account=self.account, campaign_id=self.campaign_id)


class AccountSettings(_Section):
    """An account whose campaigns may be discovered instead of listed."""

    account: Account
    discover: bool = False
    make: str | None = None
    model: str | None = None
    name_pattern: Regex | None = None
    max_campaigns: int = Field(default=500, ge=1, le=10000)
    announce: bool = Field(
        default=False, description='Send a "now watching" message when discovery adds a campaign.'
    )


class MetricsSettings(_Section):
    """The HTTP server for /metrics, /healthz and /readyz."""

    listen: ListenAddress = "127.0.0.1:10213"
    web_config_file: Path | None = Field(
        default=None, description="An exporter-toolkit web config file (TLS, basic auth)."
    )

    @field_validator("web_config_file")
    @classmethod
    def _existing_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        value = _resolve_path(value, info)
        if not value.is_file():
            raise ValueError(f"file not found: {value}")
        return value

    @property
    def host(self) -> str:
        """The host to bind; empty means every interface."""
        return parse_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return parse_listen(self.listen)[1]


class LoggingSettings(_Section):
    level: LogLevel = "info"
    format: LogFormat = "auto"


class TransitionFilter(_Section):
    """Which transitions a sink receives."""

    kinds: frozenset[TransitionKind] = frozenset(TransitionKind)
    statuses: frozenset[Status] = Field(
        default=frozenset(), description="Only transitions to these statuses; empty means all."
    )
    conditions: bool = Field(default=True, description="Send condition firing/resolved messages.")
    notices: bool = Field(
        default=True, description='Send progress milestones and "now watching" messages.'
    )

    def accepts(self, kind: TransitionKind, to_status: str) -> bool:
        return kind in self.kinds and (not self.statuses or to_status in self.statuses)


class SlackSettings(TransitionFilter):
    secret_keys: ClassVar[tuple[str, ...]] = ("webhook_url",)

    webhook_url: SinkUrl
    mention_on_failure: str | None = Field(default=None, description='For example "<!here>".')


class WebhookSettings(TransitionFilter):
    secret_keys: ClassVar[tuple[str, ...]] = ("url",)
    filled_keys: ClassVar[tuple[str, ...]] = ("name",)

    name: SinkName = Field(description="Default webhook-<index>.")
    url: SinkUrl
    headers: dict[HeaderName, HeaderValue] = Field(default_factory=dict)


class FailureRateSettings(_Section):
    """The failure-rate condition: failed / (upgraded + failed) devices above a threshold."""

    threshold: float = Field(default=0.05, gt=0, lt=1, description="A share, 0 < t < 1.")
    min_devices: int = Field(
        default=20, ge=1, description="Devices with an outcome before the share is judged."
    )


class AlertsSettings(_Section):
    slack: SlackSettings | None = None
    webhooks: tuple[WebhookSettings, ...] = ()
    stuck_after: dict[StuckStatus, Duration | None] = Field(
        default_factory=lambda: dict[StuckStatus, float | None](DEFAULT_STUCK_AFTER),
        description="Merged with the defaults; null stops watching a status.",
    )
    not_scheduled_by_start: bool = True
    overdue_after: Duration | None = Field(default=86400.0, description="null disables.")
    api_down_after: Duration | None = Field(default=600.0, description="null disables.")
    max_age: Duration = 86400.0
    min_interval_seconds: float = Field(default=1.0, ge=0, le=60)
    milestones: tuple[int, ...] = Field(
        default=(), description="Percentages of devices upgraded that send a message, 1..100."
    )
    failure_rate: FailureRateSettings | None = Field(
        default_factory=FailureRateSettings, description="null disables."
    )

    @field_validator("milestones")
    @classmethod
    def _percentages(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        bad = [m for m in value if not 1 <= m <= 100]
        if bad:
            raise ValueError(f"milestones are percentages 1..100, got {bad[0]!r}")
        return tuple(sorted(set(value)))

    @model_validator(mode="before")
    @classmethod
    def _name_webhooks(cls, data: Any) -> Any:
        webhooks = data.get("webhooks") if isinstance(data, dict) else None
        if not isinstance(webhooks, list):
            return data
        named = [{"name": f"webhook-{i}", **w} if isinstance(w, dict) else w
                 for i, w in enumerate(webhooks)]
        return {**data, "webhooks": named}

    @field_validator("stuck_after")
    @classmethod
    def _merge_stuck_after(
        cls, value: dict[StuckStatus, float | None]
    ) -> dict[StuckStatus, float | None]:
        merged = {**DEFAULT_STUCK_AFTER, **value}
        return {status: limit for status, limit in merged.items() if limit is not None}

    def stuck_threshold(self, status: str) -> float | None:
        """Seconds after which a campaign in ``status`` counts as stuck; None when not watched."""
        return cast("Mapping[str, float | None]", self.stuck_after).get(status)


class HaSettings(_Section):
    """Several instances on one PostgreSQL database (``state_dsn``): one leader polls and sends."""

    takeover_seconds: float = Field(
        default=15.0, ge=3, le=600,
        description="Longest time from the leader's death to another instance leading.",
    )  # fmt: skip


class Settings(_Section):
    """Everything fotawatch reads from its config file."""

    filled_keys: ClassVar[tuple[str, ...]] = ("thingspace",)
    secret_keys: ClassVar[tuple[str, ...]] = ("state_dsn",)

    thingspace: ThingSpaceSettings
    polling: PollingSettings = Field(default_factory=PollingSettings)
    state_path: Path = Path("/var/lib/fotawatch/state.db")
    state_dsn: PostgresDsn | None = Field(
        default=None,
        description="postgresql://... : keep the state in PostgreSQL (several instances, one"
        " leader) instead of the SQLite file at state_path.",
    )
    ha: HaSettings = Field(default_factory=HaSettings)
    campaigns: tuple[CampaignSettings, ...] = ()
    accounts: tuple[AccountSettings, ...] = ()
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    alerts: AlertsSettings = Field(default_factory=AlertsSettings)

    @field_validator("state_path")
    @classmethod
    def _resolve_state_path(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolve_path(value, info)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        _check_unique_campaigns(self.campaigns)
        _check_unique_accounts(self.accounts)
        _check_webhook_names(self.alerts.webhooks)
        _check_polling(self.polling)
        _check_retry(self.thingspace.retry)
        if self.state_dsn is not None and "state_path" in self.model_fields_set:
            raise ConfigError("state_dsn", "set either state_path (SQLite) or state_dsn"
                              " (PostgreSQL), not both")
        return self

    def campaign_keys(self) -> tuple[CampaignKey, ...]:
        return tuple(campaign.key for campaign in self.campaigns)

    def effective_interval(self, campaign: CampaignSettings) -> float:
        return campaign.interval_seconds or self.polling.interval_seconds

    def effective_jitter(self, campaign: CampaignSettings) -> float:
        return min(self.polling.jitter_seconds, self.effective_interval(campaign))

    def effective_misfire_grace(self, campaign: CampaignSettings) -> float:
        return self.polling.misfire_grace_seconds or self.effective_interval(campaign)


def _check_unique_campaigns(campaigns: tuple[CampaignSettings, ...]) -> None:
    first: dict[CampaignKey, int] = {}
    for index, campaign in enumerate(campaigns):
        seen = first.setdefault(campaign.key, index)
        if seen != index:
            raise ConfigError(f"{index_path('campaigns', index)}.id",
                              f"duplicate campaign {campaign.key} (first at campaigns[{seen}])")


def _check_unique_accounts(accounts: tuple[AccountSettings, ...]) -> None:
    first: dict[str, int] = {}
    for index, account in enumerate(accounts):
        seen = first.setdefault(account.account, index)
        if seen != index:
            raise ConfigError(f"{index_path('accounts', index)}.account",
                              f"duplicate account {account.account!r} (first at accounts[{seen}])")


def _check_webhook_names(webhooks: tuple[WebhookSettings, ...]) -> None:
    first: dict[str, int] = {"slack": -1}
    for index, webhook in enumerate(webhooks):
        seen = first.setdefault(webhook.name, index)
        if seen != index:
            where = "the Slack sink" if seen < 0 else f"alerts.webhooks[{seen}]"
            raise ConfigError(f"{index_path('alerts.webhooks', index)}.name",
                              f"name {webhook.name!r} is already used by {where}")


def _check_polling(polling: PollingSettings) -> None:
    if "jitter_seconds" in polling.model_fields_set and (
        polling.jitter_seconds > polling.interval_seconds
    ):
        raise ConfigError("polling.jitter_seconds", f"must not exceed polling.interval_seconds "
                          f"({polling.interval_seconds:g}), got {polling.jitter_seconds:g}")


def _check_retry(retry: RetrySettings) -> None:
    if retry.backoff_max_seconds < retry.backoff_initial_seconds:
        raise ConfigError("thingspace.retry.backoff_max_seconds",
                          "must be at least thingspace.retry.backoff_initial_seconds "
                          f"({retry.backoff_initial_seconds:g}), got {retry.backoff_max_seconds:g}")
