"""Config loading: defaults, bad configs with their key paths, secrets, schema."""

from __future__ import annotations

import json
import operator
from pathlib import Path
from typing import Any

import pydantic
import pytest

from fotawatch.config import (
    CREDENTIAL_NAMES,
    MAX_BYTES,
    Settings,
    config_file_warnings,
    json_schema,
    load_settings,
    parse_duration,
    parse_settings,
    settings_warnings,
)
from fotawatch.config.__main__ import main as config_main
from fotawatch.errors import ConfigError
from fotawatch.model import CampaignStatus, TransitionKind

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "fotawatch.example.yaml"
SCHEMA = ROOT / "config" / "fotawatch.schema.json"

SECRETS = {
    "THINGSPACE_CLIENT_ID": "cid-Zq81-distinct",
    "THINGSPACE_CLIENT_SECRET": "csec-Xy72-distinct",
    "THINGSPACE_USERNAME": "user-Wv63-distinct",
    "THINGSPACE_PASSWORD": "pw-Tu54-distinct",
    "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/slack-Rs45-distinct",
    "RELAY_TOKEN": "relay-Qp36-distinct",
}
CREDS = """\
thingspace:
  client_id: ${THINGSPACE_CLIENT_ID}
  client_secret: ${THINGSPACE_CLIENT_SECRET}
  username: ${THINGSPACE_USERNAME}
  password: ${THINGSPACE_PASSWORD}
"""
MINIMAL = CREDS + """\
campaigns:
  - account: "0642233522-00001"
    id: f858b8c4-2153-11ec-8c44-aeb16d1aa652
"""
INLINE = MINIMAL.replace("${THINGSPACE_PASSWORD}", "hunter2-inline")
BILLION_LAUGHS = "lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"lol{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]\n" for n in range(1, 9)
)


def write_config(directory: Path, text: str | bytes, name: str = "fotawatch.yaml") -> Path:
    path = directory / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str | bytes, environ: dict[str, str] | None = None) -> Settings:
    path = write_config(tmp_path, text)
    return load_settings(path, environ=SECRETS if environ is None else environ)


def test_example_file_parses(tmp_path: Path) -> None:
    """The shipped example is valid with its secrets as systemd credentials (as the unit gives)."""
    creds = {
        "thingspace-client-id": SECRETS["THINGSPACE_CLIENT_ID"],
        "thingspace-client-secret": SECRETS["THINGSPACE_CLIENT_SECRET"],
        "thingspace-username": SECRETS["THINGSPACE_USERNAME"],
        "thingspace-password": SECRETS["THINGSPACE_PASSWORD"],
        "slack-webhook-url": SECRETS["SLACK_WEBHOOK_URL"],
    }
    for name, value in creds.items():
        (tmp_path / name).write_text(value + "\n")
    settings = load_settings(EXAMPLE, environ={"CREDENTIALS_DIRECTORY": str(tmp_path)})

    assert "0642233522-00001" == settings.campaigns[0].account
    assert 60 == settings.effective_interval(settings.campaigns[0])
    assert SECRETS["THINGSPACE_PASSWORD"] == settings.thingspace.password.get_secret_value()
    assert settings.alerts.slack is not None
    assert SECRETS["SLACK_WEBHOOK_URL"] == settings.alerts.slack.webhook_url.get_secret_value()
    assert () == settings.alerts.webhooks
    assert [] == settings_warnings(settings)
    assert [] == config_file_warnings(EXAMPLE)


def _schema_keys(schema: dict[str, Any], defs: dict[str, Any]) -> set[str]:
    if "$ref" in schema:
        return _schema_keys(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    keys = set(schema.get("properties", {}))
    for sub in [*schema.get("properties", {}).values(), *schema.get("anyOf", [])]:
        keys |= _schema_keys(sub, defs)
    return keys | _schema_keys(schema["items"], defs) if "items" in schema else keys


def test_example_documents_every_key() -> None:
    """Every key of the schema appears in the example file (X_file keys by the general rule)."""
    schema = json_schema()
    text = EXAMPLE.read_text(encoding="utf-8")
    keys = _schema_keys(schema, schema["$defs"])
    file_variants = {f"{key}_file" for key in keys}

    missing = {key for key in keys - file_variants if key not in text}

    assert "X_file: PATH" in text

    assert set() == missing


DEFAULTS = [
    ("thingspace.base_url", "https://thingspace.verizon.com"),
    ("thingspace.timeout_seconds", 10),
    ("thingspace.max_concurrency", 8),
    ("thingspace.requests_per_second", 5),
    ("thingspace.max_login_failures", 2),
    ("thingspace.token_refresh_margin_seconds", 60),
    ("thingspace.retry.attempts", 3),
    ("thingspace.retry.backoff_initial_seconds", 0.5),
    ("thingspace.retry.backoff_max_seconds", 30),
    ("thingspace.retry.retry_after_max_seconds", 120),
    ("polling.interval_seconds", 300),
    ("polling.jitter_seconds", 15),
    ("polling.misfire_grace_seconds", None),
    ("polling.final_confirmations", 1),
    ("polling.missing_interval_seconds", 3600),
    ("polling.devices_interval_seconds", 900),
    ("polling.discovery_interval_seconds", 600),
    ("state_path", Path("/var/lib/fotawatch/state.db")),
    ("accounts", ()),
    ("metrics.listen", "127.0.0.1:10213"),
    ("metrics.host", "127.0.0.1"),
    ("metrics.port", 10213),
    ("metrics.web_config_file", None),
    ("logging.level", "info"),
    ("logging.format", "auto"),
    ("alerts.slack", None),
    ("alerts.webhooks", ()),
    ("alerts.stuck_after", {"CampaignRequestPending": 7200, "CampaignRequestQueued": 86400,
                            "CampaignPreScheduled": 86400}),
    ("alerts.not_scheduled_by_start", True),
    ("alerts.overdue_after", 86400),
    ("alerts.api_down_after", 600),
    ("alerts.max_age", 86400),
    ("alerts.min_interval_seconds", 1.0),
]


@pytest.mark.parametrize(("attribute", "expected"), DEFAULTS, ids=[d[0] for d in DEFAULTS])
def test_defaults_when_keys_are_omitted(tmp_path: Path, attribute: str, expected: object) -> None:
    """A config with only credentials and one campaign gets the documented defaults."""
    settings = load(tmp_path, MINIMAL)

    assert expected == operator.attrgetter(attribute)(settings)


def test_minimal_campaign_fields(tmp_path: Path) -> None:
    """A campaign keeps its account as written and falls back to the global interval."""
    settings = load(tmp_path, MINIMAL)
    campaign = settings.campaigns[0]

    assert ("0642233522-00001", "f858b8c4-2153-11ec-8c44-aeb16d1aa652", None) == (
        campaign.account, campaign.campaign_id, campaign.name
    )
    assert (300, 15, 300) == (
        settings.effective_interval(campaign),
        settings.effective_jitter(campaign),
        settings.effective_misfire_grace(campaign),
    )
    assert CAMPAIGN == str(settings.campaign_keys()[0])


def test_slack_defaults(tmp_path: Path) -> None:
    """A Slack section with only the webhook sends every kind, every status, and conditions."""
    settings = load(tmp_path, MINIMAL + "alerts:\n  slack: {}\n",
                    environ={**SECRETS, "CREDENTIALS_DIRECTORY": str(_credentials(tmp_path))})

    slack = settings.alerts.slack
    assert slack is not None
    assert (frozenset(TransitionKind), frozenset(), True, None) == (
        slack.kinds, slack.statuses, slack.conditions, slack.mention_on_failure
    )


def _credentials(tmp_path: Path) -> Path:
    directory = tmp_path / "credentials"
    directory.mkdir(exist_ok=True)
    for key, name in CREDENTIAL_NAMES.items():
        (directory / name).write_text(f"{_credential(key)}\n", encoding="utf-8")
    return directory


def _credential(key: str) -> str:
    scheme = "postgresql" if key == "state_dsn" else "https"
    return f"{scheme}://cred.example/{key}"


def bad(
    case: str, text: str | bytes, key: str, fragment: str, files: dict[str, str] | None = None
) -> Any:
    """One row of the bad-config table: the config, the key path and part of the message."""
    return pytest.param(text, files or {}, key, fragment, id=case)


def without_password(replacement: str) -> str:
    return MINIMAL.replace("password: ${THINGSPACE_PASSWORD}", replacement)


def with_alerts(alerts: str) -> str:
    return MINIMAL + f"alerts: {alerts}\n"


CAMPAIGN = "0642233522-00001/f858b8c4-2153-11ec-8c44-aeb16d1aa652"
BAD_CONFIGS = [
    # document-level problems: the key is empty, the message starts with file:line:column
    bad("yaml-syntax", MINIMAL + "polling: [\n", "", "fotawatch.yaml:10:1: expected the node"),
    bad("top-level-list", "- thingspace\n- campaigns\n", "", "top level must be a mapping"),
    bad("empty-file", "# nothing here\n", "", "config file is empty"),
    bad("impossible-date", MINIMAL + "polling: {note: 2001-13-01}\n", "",
        "a value cannot be read: month must be in 1..12"),
    bad("billion-laughs", BILLION_LAUGHS, "", "expands to more than 100000 nodes"),
    bad("too-many-aliases", "a: &a x\nb: [" + ", ".join(["*a"] * 101) + "]\n", "",
        "more than 100 aliases"),
    bad("too-deep", "a: " + "[" * 100 + "]" * 100 + "\n", "", "nested more than 64 levels"),
    bad("too-deep-through-aliases", "a: &a " + "[" * 40 + "x" + "]" * 40 + "\nb: "
        + "[" * 40 + "*a" + "]" * 40 + "\n", "", "nested more than 64 levels deep through aliases"),
    bad("larger-than-1-mib", "#" * (MAX_BYTES + 1), "", "larger than 1 MiB"),
    bad("not-utf-8", MINIMAL.encode() + b"name: caf\xe9\n", "",
        "fotawatch.yaml:9: config file is not valid UTF-8"),
    bad("recursive-alias", "a: &a [*a]\n", "a[0]", "recursive alias"),
    bad("duplicate-yaml-key", MINIMAL + "polling: {}\npolling: {}\n", "polling",
        "duplicate key at"),
    bad("non-string-key", MINIMAL + "logging: {on: true}\n", "logging.on",
        "key at <tmp>/fotawatch.yaml:9:11 must be a string; quote it"),
    # keys and types
    bad("unknown-top-level-key", MINIMAL + "pollling: {}\n", "pollling",
        "unknown key (did you mean 'polling'?)"),
    bad("unknown-nested-key", CREDS + "  requests_per_secnd: 3\n",
        "thingspace.requests_per_secnd", "did you mean 'requests_per_second'"),
    bad("wrong-type", MINIMAL + "polling: {interval_seconds: often}\n",
        "polling.interval_seconds", "must be a number, got 'often'"),
    bad("wrong-type-section", MINIMAL + "metrics: [127.0.0.1]\n", "metrics", "must be a mapping"),
    bad("missing-required-key", CREDS + "campaigns: [{account: '1'}]\n", "campaigns[0].id",
        "required key is missing"),
    bad("account-as-int", CREDS + "campaigns:\n  - {account: 0642233522, id: x}\n",
        "campaigns[0].account", "must be a quoted string: YAML read 109655890 as a number"),
    bad("duplicate-campaign", MINIMAL + "  - {account: '0642233522-00001', "
        "id: f858b8c4-2153-11ec-8c44-aeb16d1aa652}\n", "campaigns[1].id",
        f"duplicate campaign {CAMPAIGN} (first at campaigns[0])"),
    bad("duplicate-account", MINIMAL + "accounts: [{account: a}, {account: a}]\n",
        "accounts[1].account", "duplicate account 'a'"),
    bad("bad-regex", MINIMAL + "accounts: [{account: a, name_pattern: 'GM01Q ('}]\n",
        "accounts[0].name_pattern", "is not a valid regular expression"),
    # environment variables and secrets
    bad("unset-variable", without_password("password: ${NOT_SET_ANYWHERE}"),
        "thingspace.password", "environment variable NOT_SET_ANYWHERE is not set"),
    bad("malformed-reference", without_password("password: pw${oops"), "thingspace.password",
        "malformed ${...} reference"),
    bad("unreadable-secret-file", without_password("password_file: no-such-file"),
        "thingspace.password_file", "No such file or directory"),
    bad("secret-file-is-a-directory", without_password("password_file: ."),
        "thingspace.password_file", "is not a regular file"),
    bad("empty-secret-file", without_password("password_file: pw.txt"),
        "thingspace.password_file", "is empty", {"pw.txt": "\n"}),
    bad("both-secret-and-file", CREDS + "  password_file: pw.txt\n", "thingspace.password_file",
        "set either password or password_file, not both", {"pw.txt": "x"}),
    bad("secret-missing-everywhere", MINIMAL.replace("  client_id: ${THINGSPACE_CLIENT_ID}\n", ""),
        "thingspace.client_id",
        "missing (set client_id, client_id_file, or the systemd credential thingspace-client-id)"),
    bad("webhook-url-missing", with_alerts("{webhooks: [{name: a}]}"), "alerts.webhooks[0].url",
        "missing (set url or url_file)"),
    # ranges and cross-key rules
    bad("requests-per-second-zero", CREDS + "  requests_per_second: 0\n",
        "thingspace.requests_per_second", "must be greater than 0"),
    bad("max-login-failures-five", CREDS + "  max_login_failures: 5\n",
        "thingspace.max_login_failures", "must be at most 3 (ThingSpace locks the user"),
    bad("interval-below-one-second", MINIMAL + "polling: {interval_seconds: 0.5}\n",
        "polling.interval_seconds", "must be at least 1, got 0.5"),
    bad("campaign-interval-zero", CREDS + "campaigns: [{account: a, id: b, interval_seconds: 0}]\n",
        "campaigns[0].interval_seconds", "must be at least 1"),
    bad("jitter-above-interval", MINIMAL + "polling: {interval_seconds: 10, jitter_seconds: 11}\n",
        "polling.jitter_seconds", "must not exceed polling.interval_seconds (10)"),
    bad("devices-interval-fraction", MINIMAL + "polling: {devices_interval_seconds: 0.5}\n",
        "polling.devices_interval_seconds", "must be 0 (disabled) or at least 1"),
    bad("backoff-max-below-initial",
        CREDS + "  retry: {backoff_initial_seconds: 5, backoff_max_seconds: 1}\n",
        "thingspace.retry.backoff_max_seconds", "must be at least"),
    bad("bad-duration", with_alerts("{api_down_after: 10 minutes}"), "alerts.api_down_after",
        "must be a duration"),
    bad("zero-duration", with_alerts("{max_age: 0s}"), "alerts.max_age", "must be greater than 0"),
    bad("bad-stuck-status", with_alerts("{stuck_after: {CampaignScheduled: 1h}}"),
        "alerts.stuck_after.CampaignScheduled", "must be one of 'CampaignRequestPending'"),
    # sinks
    bad("http-webhook-non-loopback", with_alerts("{webhooks: [{url: 'http://relay.example/h'}]}"),
        "alerts.webhooks[0].url", "must be an https:// URL unless the host is loopback"),
    bad("http-slack-non-loopback", with_alerts("{slack: {webhook_url: 'http://10.0.0.1/hook'}}"),
        "alerts.slack.webhook_url", "must be an https:// URL"),
    bad("duplicate-webhook-name",
        with_alerts("{webhooks: [{name: a, url: 'https://x'}, {name: a, url: 'https://y'}]}"),
        "alerts.webhooks[1].name", "already used by alerts.webhooks[0]"),
    bad("webhook-named-slack", with_alerts("{webhooks: [{name: slack, url: 'https://x'}]}"),
        "alerts.webhooks[0].name", "already used by the Slack sink"),
    bad("unknown-kind", with_alerts("{slack: {webhook_url: 'https://x', kinds: [failure]}}"),
        "alerts.slack.kinds[0]", "must be one of 'progressed'"),
    bad("null-kinds", with_alerts("{slack: {webhook_url: 'https://x', kinds: null}}"),
        "alerts.slack.kinds", "must be a list, got None"),
    bad("unknown-status", with_alerts("{slack: {webhook_url: 'https://x', statuses: [Done]}}"),
        "alerts.slack.statuses[0]", "must be one of 'CampaignRequestPending'"),
    # metrics, logging, API
    bad("bad-listen", MINIMAL + "metrics: {listen: '::1:10213'}\n", "metrics.listen",
        "IPv6 host in brackets"),
    bad("listen-port-out-of-range", MINIMAL + "metrics: {listen: '127.0.0.1:65536'}\n",
        "metrics.listen", "port must be between 0 and 65535"),
    bad("missing-web-config-file", MINIMAL + "metrics: {web_config_file: web.yml}\n",
        "metrics.web_config_file", "file not found"),
    bad("bad-log-level", MINIMAL + "logging: {level: verbose}\n", "logging.level",
        "must be one of 'debug', 'info', 'warning' or 'error'"),
    bad("base-url-not-http", MINIMAL.replace("thingspace:\n", "thingspace:\n  base_url: ftp://x\n"),
        "thingspace.base_url", "must be an http:// or https:// URL"),
    bad("state-dsn-not-postgres", MINIMAL + "state_dsn: mysql://u:pw-Tu54-distinct@db/x\n",
        "state_dsn", "must be a postgresql:// URI"),
    bad("state-dsn-and-path", MINIMAL + "state_path: s.db\nstate_dsn: postgresql://db/x\n",
        "state_dsn", "set either state_path (SQLite) or state_dsn (PostgreSQL), not both"),
    bad("state-dsn-file-missing", MINIMAL + "state_dsn_file: absent\n", "state_dsn_file",
        "cannot read"),
    bad("takeover-too-short", MINIMAL + "state_dsn: postgresql://db/x\nha: {takeover_seconds: 1}\n",
        "ha.takeover_seconds", "must be at least 3, got 1"),
]


@pytest.mark.parametrize(("text", "files", "key", "fragment"), BAD_CONFIGS)
def test_bad_config_names_the_key(
    tmp_path: Path, text: str | bytes, files: dict[str, str], key: str, fragment: str
) -> None:
    """Each bad config fails with one line naming the key path and the problem, and no secret."""
    for name, content in files.items():
        (tmp_path / name).write_text(content, encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)

    message = str(caught.value).replace(str(tmp_path), "<tmp>")
    assert (key, True) == (caught.value.key, fragment in message), message
    assert "\n" not in message
    assert [] == [value for value in SECRETS.values() if value in message]


def test_state_dsn_from_a_file_or_a_credential(tmp_path: Path) -> None:
    """state_dsn_file reads the DSN; the state-dsn credential applies unless state_path is set."""
    (tmp_path / "dsn").write_text("postgresql://fw:pw-Tu54-distinct@db:5432/fw\n", encoding="utf-8")
    from_file = load(tmp_path, MINIMAL + "state_dsn_file: dsn\n")
    environ = {**SECRETS, "CREDENTIALS_DIRECTORY": str(_credentials(tmp_path))}
    from_credential = load(tmp_path, MINIMAL, environ=environ)
    sqlite = load(tmp_path, MINIMAL + "state_path: s.db\n", environ=environ)

    assert from_file.state_dsn is not None
    assert from_credential.state_dsn is not None
    assert (
        "postgresql://fw:pw-Tu54-distinct@db:5432/fw", _credential("state_dsn"), None,
    ) == (
        from_file.state_dsn.get_secret_value(), from_credential.state_dsn.get_secret_value(),
        sqlite.state_dsn,
    )  # fmt: skip
    assert "pw-Tu54-distinct" not in repr(from_file)


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    """A config path that does not exist is a ConfigError naming the file and the OS reason."""
    with pytest.raises(ConfigError, match="No such file or directory") as caught:
        load_settings(tmp_path / "absent.yaml", environ=SECRETS)

    assert str(tmp_path / "absent.yaml") in str(caught.value)


def test_parse_settings_names_its_source(tmp_path: Path) -> None:
    """parse_settings reports document problems under the source name it was given."""
    with pytest.raises(ConfigError, match=r"^reload: the top level must be a mapping"):
        parse_settings("just a string", environ={}, base_dir=tmp_path, source="reload")


def test_null_sections_read_as_empty(tmp_path: Path) -> None:
    """A section whose children are all commented out (null in YAML) gets its defaults."""
    text = CREDS + "campaigns:\naccounts:\npolling:\nmetrics:\nlogging:\nalerts:\n  webhooks:\n"

    settings = load(tmp_path, text)

    assert ((), (), 300, ()) == (
        settings.campaigns, settings.accounts, settings.polling.interval_seconds,
        settings.alerts.webhooks,
    )


def test_parse_settings_refuses_huge_text(tmp_path: Path) -> None:
    """parse_settings applies the same 1 MiB limit as load_settings."""
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        parse_settings("#" * (MAX_BYTES + 1), environ={}, base_dir=tmp_path)


SECRET_LEAKS = [
    ("password-wrong-type", CREDS.replace("${THINGSPACE_PASSWORD}", "[pw-Tu54-distinct]"),
     "pw-Tu54-distinct"),
    ("password-as-mapping", CREDS.replace("${THINGSPACE_PASSWORD}", "{value: tok-Aa11}"),
     "tok-Aa11"),
    ("unknown-key-holding-a-secret", CREDS + "  passwd: hunter2-Mn27\n", "hunter2-Mn27"),
    ("slack-url-plain-http", MINIMAL + "alerts: {slack: {webhook_url: "
     "'http://hooks.example/T0/B0/tok-Lk18'}}\n", "tok-Lk18"),
    ("slack-url-not-a-url", MINIMAL + "alerts: {slack: {webhook_url: 'tok-Lk18 space'}}\n",
     "tok-Lk18"),
    ("webhook-header-newline", with_alerts(
        """{webhooks: [{url: 'https://x', headers: {X-Token: "tok-Jh09\\nInjected: 1"}}]}"""
    ), "tok-Jh09"),
    ("webhook-url-bad-type", MINIMAL + "alerts: {webhooks: [{url: 12345678}]}\n", "12345678"),
    ("secret-in-env-reference-error", MINIMAL.replace("${THINGSPACE_PASSWORD}",
                                                      "tok-Gf90${oops"), "tok-Gf90"),
]


@pytest.mark.parametrize(("text", "secret"), [c[1:] for c in SECRET_LEAKS],
                         ids=[c[0] for c in SECRET_LEAKS])
def test_invalid_secret_is_never_echoed(tmp_path: Path, text: str, secret: str) -> None:
    """An error about a secret key says what is wrong without quoting the value."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)

    assert secret not in str(caught.value)
    assert secret not in repr(caught.value)


def test_valid_secrets_never_appear_in_repr(tmp_path: Path) -> None:
    """repr() and str() of the settings mask every secret, including webhook URLs and headers."""
    text = MINIMAL + """\
alerts:
  slack: {webhook_url: "${SLACK_WEBHOOK_URL}"}
  webhooks:
    - name: relay
      url: https://relay.example/hook
      headers: {Authorization: "Bearer ${RELAY_TOKEN}"}
"""
    settings = load(tmp_path, text)

    rendered = repr(settings) + str(settings) + settings.model_dump_json()

    assert [] == [value for value in SECRETS.values() if value in rendered]


def test_non_secret_values_are_echoed_truncated(tmp_path: Path) -> None:
    """A bad non-secret value is quoted, cut to about 60 characters."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, MINIMAL + f"polling: {{interval_seconds: {'x' * 200}}}\n")

    assert str(caught.value).endswith("got '" + "x" * 56 + "...")


def test_credentials_directory_supplies_secrets(tmp_path: Path) -> None:
    """With no secret in the YAML, each is read from $CREDENTIALS_DIRECTORY/<credential name>."""
    environ = {"CREDENTIALS_DIRECTORY": str(_credentials(tmp_path))}
    text = "campaigns: [{account: a, id: b}]\nalerts:\n  slack: {}\n"

    settings = load(tmp_path, text, environ=environ)

    assert settings.alerts.slack is not None
    assert {
        "thingspace.client_id": settings.thingspace.client_id.get_secret_value(),
        "thingspace.client_secret": settings.thingspace.client_secret.get_secret_value(),
        "thingspace.username": settings.thingspace.username.get_secret_value(),
        "thingspace.password": settings.thingspace.password.get_secret_value(),
        "alerts.slack.webhook_url": settings.alerts.slack.webhook_url.get_secret_value(),
        "state_dsn": settings.state_dsn.get_secret_value() if settings.state_dsn else None,
    } == {key: _credential(key) for key in CREDENTIAL_NAMES}


def test_credential_is_ignored_without_slack_section(tmp_path: Path) -> None:
    """The Slack credential alone does not switch Slack on."""
    environ = {"CREDENTIALS_DIRECTORY": str(_credentials(tmp_path))}

    settings = load(tmp_path, "campaigns: []\n", environ=environ)

    assert settings.alerts.slack is None


def test_yaml_value_wins_over_credential(tmp_path: Path) -> None:
    """A secret set in the YAML is used even when a systemd credential exists."""
    environ = {**SECRETS, "CREDENTIALS_DIRECTORY": str(_credentials(tmp_path))}

    settings = load(tmp_path, MINIMAL, environ=environ)

    assert SECRETS["THINGSPACE_PASSWORD"] == settings.thingspace.password.get_secret_value()


@pytest.mark.parametrize(
    ("content", "expected"),
    [("s3cret\n", "s3cret"), ("s3cret", "s3cret"), ("s3cret\r\n", "s3cret"),
     ("s3cret\n\n", "s3cret\n"), (" spaced \n", " spaced ")],
)
def test_secret_file_strips_one_trailing_newline(
    tmp_path: Path, content: str, expected: str
) -> None:
    """X_file reads the file relative to the config's directory and strips one trailing newline."""
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "pw").write_text(content, encoding="utf-8", newline="")
    text = MINIMAL.replace("password: ${THINGSPACE_PASSWORD}", "password_file: secrets/pw")

    settings = load(tmp_path, text)

    assert expected == settings.thingspace.password.get_secret_value()


def test_webhook_url_file(tmp_path: Path) -> None:
    """A webhook URL can come from url_file, and webhooks get default names by position."""
    (tmp_path / "url").write_text("https://relay.example/hook\n", encoding="utf-8")
    text = MINIMAL + "alerts:\n  webhooks:\n    - {url_file: url}\n    - {url: 'http://[::1]:9/x'}\n"

    webhooks = load(tmp_path, text).alerts.webhooks

    assert ["webhook-0", "webhook-1"] == [w.name for w in webhooks]
    assert "https://relay.example/hook" == webhooks[0].url.get_secret_value()


@pytest.mark.parametrize(
    ("state_path", "expected"),
    [("state.db", "{dir}/state.db"), ("data/state.db", "{dir}/data/state.db"),
     ("/srv/fotawatch/state.db", "/srv/fotawatch/state.db")],
)
def test_state_path_resolves_against_config_directory(
    tmp_path: Path, state_path: str, expected: str
) -> None:
    """A relative state_path is taken relative to the config file, not the working directory."""
    settings = load(tmp_path, MINIMAL + f"state_path: {state_path}\n")

    assert Path(expected.format(dir=tmp_path)) == settings.state_path


def test_web_config_file_resolves_against_config_directory(tmp_path: Path) -> None:
    """metrics.web_config_file is resolved like state_path and must exist."""
    (tmp_path / "web.yml").write_text("{}\n", encoding="utf-8")

    settings = load(tmp_path, MINIMAL + "metrics: {web_config_file: web.yml}\n")

    assert tmp_path / "web.yml" == settings.metrics.web_config_file


@pytest.mark.parametrize(
    ("value", "environ", "expected"),
    [
        ("${NAME:-fallback}", {}, "fallback"),
        ("${NAME:-fallback}", {"NAME": ""}, "fallback"),
        ("${NAME:-fallback}", {"NAME": "given"}, "given"),
        ("${NAME:-}", {}, ""),
        ("pre-${NAME}-post", {"NAME": "mid"}, "pre-mid-post"),
        ("cost $$5", {}, "cost $5"),
        ("$${NAME}", {"NAME": "x"}, "${NAME}"),
        ("$5 and $x", {}, "$5 and $x"),
        ("${A}${B}", {"A": "1", "B": "2"}, "12"),
    ],
)
def test_environment_expansion(
    tmp_path: Path, value: str, environ: dict[str, str], expected: str
) -> None:
    """${VAR} and ${VAR:-default} expand in string values; $$ is a literal $."""
    text = MINIMAL + f"  - {{account: a, id: b, name: '{value}'}}\n"

    settings = load(tmp_path, text, environ={**SECRETS, **environ})

    assert expected == settings.campaigns[1].name


def test_expansion_feeds_numbers(tmp_path: Path) -> None:
    """An expanded string is validated like a YAML value: '60' becomes 60 seconds."""
    text = MINIMAL + "polling: {interval_seconds: '${INTERVAL:-60}'}\n"

    assert 60 == load(tmp_path, text).polling.interval_seconds


def test_empty_variable_without_default_is_an_error(tmp_path: Path) -> None:
    """${VAR} set to the empty string is an error that names the variable."""
    with pytest.raises(ConfigError, match="environment variable THINGSPACE_PASSWORD is empty"):
        load(tmp_path, MINIMAL, environ={**SECRETS, "THINGSPACE_PASSWORD": ""})


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(45, 45.0), (1.5, 1.5), ("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("2h", 7200.0),
     ("1d", 86400.0), ("1w", 604800.0), ("1h30m", 5400.0), ("1.5h", 5400.0), ("500ms", 0.5),
     (" 10m ", 600.0)],
)
def test_parse_duration(value: object, seconds: float) -> None:
    """Durations are seconds, or numbers with units ms, s, m, h, d, w, which may be combined."""
    assert seconds == parse_duration(value)


@pytest.mark.parametrize("value", ["10 minutes", "1h-30m", "m", "", True, None, [1], "1y"])
def test_parse_duration_rejects(value: object) -> None:
    """Anything else is a ValueError with a short explanation."""
    with pytest.raises(ValueError, match="must be a duration"):
        parse_duration(value)


def test_stuck_after_merges_with_defaults(tmp_path: Path) -> None:
    """stuck_after overrides single statuses; null stops watching one."""
    text = with_alerts("{stuck_after: {CampaignRequestPending: 30m, CampaignPreScheduled: null}}")

    alerts = load(tmp_path, text).alerts

    assert (1800, 86400, None) == (
        alerts.stuck_threshold("CampaignRequestPending"),
        alerts.stuck_threshold("CampaignRequestQueued"),
        alerts.stuck_threshold("CampaignPreScheduled"),
    )


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [("127.0.0.1:10213", "127.0.0.1", 10213), ("[::1]:9100", "::1", 9100), (":9100", "", 9100),
     ("localhost:0", "localhost", 0), ("[0:0::1]:80", "::1", 80)],
)
def test_metrics_listen(tmp_path: Path, listen: str, host: str, port: int) -> None:
    """metrics.listen is host:port, IPv6 in brackets, empty host for every interface."""
    metrics = load(tmp_path, MINIMAL + f"metrics: {{listen: '{listen}'}}\n").metrics

    assert (host, port) == (metrics.host, metrics.port)


@pytest.mark.parametrize(
    ("kind", "to_status", "expected"),
    [(TransitionKind.FAILED, "CampaignFailed", True),
     (TransitionKind.FAILED, "CampaignRequestFailed", True),
     (TransitionKind.FAILED, "CampaignAborted", False),
     (TransitionKind.PROGRESSED, "CampaignFailed", False)],
)
def test_sink_filter(tmp_path: Path, kind: TransitionKind, to_status: str, expected: bool) -> None:
    """A sink accepts a transition only when both its kind and its target status are listed."""
    text = MINIMAL + ("alerts: {slack: {webhook_url: 'https://x', kinds: [failed], "
                      "statuses: [CampaignFailed, CampaignRequestFailed]}}\n")
    slack = load(tmp_path, text).alerts.slack

    assert slack is not None
    assert expected == slack.accepts(kind, to_status)


def test_status_aliases_are_normalised(tmp_path: Path) -> None:
    """A status filter may use the API's alias CampaignQueued."""
    text = MINIMAL + "alerts: {slack: {webhook_url: 'https://x', statuses: [CampaignQueued]}}\n"
    slack = load(tmp_path, text).alerts.slack

    assert slack is not None
    assert frozenset({CampaignStatus.REQUEST_QUEUED}) == slack.statuses


def test_campaign_interval_override(tmp_path: Path) -> None:
    """A campaign's own interval wins; jitter and misfire grace never exceed it."""
    text = CREDS + "campaigns: [{account: a, id: b, interval_seconds: 5}]\n"
    settings = load(tmp_path, text)
    campaign = settings.campaigns[0]

    assert (5, 5, 5) == (
        settings.effective_interval(campaign),
        settings.effective_jitter(campaign),
        settings.effective_misfire_grace(campaign),
    )


def test_default_jitter_is_clamped_for_short_intervals(tmp_path: Path) -> None:
    """A one-second test interval works without touching the default jitter."""
    settings = load(tmp_path, MINIMAL + "polling: {interval_seconds: 1}\n")

    assert 1 == settings.effective_jitter(settings.campaigns[0])


def test_settings_are_frozen(tmp_path: Path) -> None:
    """Settings cannot be changed after loading."""
    settings = load(tmp_path, MINIMAL)

    with pytest.raises(pydantic.ValidationError):
        settings.polling.interval_seconds = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (CREDS, ["no campaigns listed and no account to discover"]),
        (MINIMAL.replace("thingspace:\n", "thingspace:\n  base_url: http://api.example\n"),
         ["plain http to a non-loopback host"]),
        (MINIMAL.replace("thingspace:\n", "thingspace:\n  base_url: http://127.0.0.1:8080/\n"),
         []),
    ],
)
def test_settings_warnings(tmp_path: Path, text: str, expected: list[str]) -> None:
    """Valid but suspicious settings produce warnings, not errors."""
    warnings = settings_warnings(load(tmp_path, text))

    assert len(expected) == len(warnings)
    assert all(part in warning for part, warning in zip(expected, warnings, strict=True))


@pytest.mark.parametrize(
    ("text", "mode", "expected"),
    [(MINIMAL, 0o600, []), (MINIMAL, 0o640, []),
     (MINIMAL, 0o644, []),  # secrets only referenced (${VAR}): readable is fine
     (INLINE, 0o600, []),
     (INLINE, 0o644, [("config file is readable by other users (mode 0644) and holds secrets "
                       "inline; use *_file keys, ${VAR} or systemd credentials")]),
     (MINIMAL, 0o664, [("config file is writable by its group or other users (mode 0664); they "
                        "can change where fotawatch sends credentials and alerts")])],
)
def test_config_file_warnings(tmp_path: Path, text: str, mode: int, expected: list[str]) -> None:
    """Inline secrets readable by everyone, or a file writable by others, are worth a warning."""
    path = write_config(tmp_path, text)
    path.chmod(mode)

    assert expected == config_file_warnings(path)


def test_schema_file_is_up_to_date() -> None:
    """config/fotawatch.schema.json is what json_schema() generates."""
    committed = json.loads(SCHEMA.read_text(encoding="utf-8"))

    assert json_schema() == committed, (
        "config/fotawatch.schema.json is stale; regenerate it with:\n"
        "  .venv/bin/python -m fotawatch.config schema > config/fotawatch.schema.json"
    )


def test_schema_command_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m fotawatch.config schema` prints the schema as JSON; other arguments are usage."""
    assert 0 == config_main(["schema"])
    assert json_schema() == json.loads(capsys.readouterr().out)
    assert 2 == config_main([])
    assert "usage:" in capsys.readouterr().err


def test_schema_offers_file_variants_of_secrets() -> None:
    """The schema lists password_file beside password and requires neither."""
    thingspace = json_schema()["$defs"]["ThingSpaceSettings"]

    assert "password_file" in thingspace["properties"]
    assert "required" not in thingspace
