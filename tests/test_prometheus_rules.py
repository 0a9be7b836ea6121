"""The Prometheus and Grafana files in deploy/ against the metric contract (docs/metrics.md).

promtool checks the rules, their unit tests and the scrape config; static checks hold the rules
and the dashboard to the contract below; a real Prometheus scrapes a fake exporter and fires.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import yaml
from aiohttp import web
from prometheus_server import RULES_FILE, SCRAPE_FILE, build_config, running_prometheus
from tools import run_tool

ROOT = Path(__file__).resolve().parent.parent
RULE_TESTS = sorted((ROOT / "deploy" / "prometheus" / "tests").glob("*.yml"))
DASHBOARD = ROOT / "deploy" / "grafana" / "fotawatch-dashboard.json"
METRICS_DOC = ROOT / "docs" / "metrics.md"

CAMPAIGN = frozenset({"account", "campaign_id"})
# The metric contract: name -> (type, labels). docs/metrics.md must document exactly this.
CONTRACT: dict[str, tuple[str, frozenset[str]]] = {
    "fotawatch_campaign_status": ("gauge", CAMPAIGN | {"status"}),
    "fotawatch_campaign_info": (
        "gauge",
        CAMPAIGN | {"campaign_name", "make", "model", "protocol", "firmware_from", "firmware_to"},
    ),
    "fotawatch_campaign_start_date_timestamp_seconds": ("gauge", CAMPAIGN),
    "fotawatch_campaign_end_date_timestamp_seconds": ("gauge", CAMPAIGN),
    "fotawatch_campaign_status_changed_timestamp_seconds": ("gauge", CAMPAIGN),
    "fotawatch_campaign_last_poll_success_timestamp_seconds": ("gauge", CAMPAIGN),
    "fotawatch_campaign_missing": ("gauge", CAMPAIGN),
    "fotawatch_campaign_polling": ("gauge", CAMPAIGN),
    "fotawatch_campaign_transitions_total": ("counter", CAMPAIGN | {"from_status", "to_status"}),
    "fotawatch_campaign_devices": ("gauge", CAMPAIGN | {"device_status"}),
    "fotawatch_polls_total": ("counter", frozenset({"account", "result"})),
    "fotawatch_polls_skipped_total": ("counter", frozenset({"account"})),
    "fotawatch_device_polls_total": ("counter", frozenset({"account", "result"})),
    "fotawatch_poll_duration_seconds": ("histogram", frozenset()),
    "fotawatch_api_up": ("gauge", frozenset()),
    "fotawatch_auth_requests_total": ("counter", frozenset({"kind", "result"})),
    "fotawatch_login_circuit_open": ("gauge", frozenset()),
    "fotawatch_build_info": ("gauge", frozenset({"version"})),
    "fotawatch_config_last_reload_successful": ("gauge", frozenset()),
    "fotawatch_config_last_reload_success_timestamp_seconds": ("gauge", frozenset()),
    "fotawatch_leader": ("gauge", frozenset()),
    "fotawatch_leader_changes_total": ("counter", frozenset()),
    "fotawatch_notifications_total": ("counter", frozenset({"sink", "result"})),
    "fotawatch_notification_queue_depth": ("gauge", frozenset({"sink"})),
    "fotawatch_notification_latency_seconds": ("histogram", frozenset({"sink"})),
}
TARGET_LABELS = frozenset({"job", "instance"})
# Series Prometheus itself produces, which the rules and dashboard may also use.
PROMETHEUS_SERIES = {
    "up": frozenset(),
    "ALERTS": frozenset({"alertname", "alertstate", "severity"}),
}
SEVERITIES = {"critical", "warning", "info"}


# ---------------------------------------------------------------- PromQL name extraction

_SELECTOR = re.compile(r"(?P<name>[A-Za-z_:][\w:]*)?\s*\{(?P<matchers>[^}]*)\}")
_MATCHER_LABEL = re.compile(r"(?P<label>[A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_RANGE = re.compile(r"\[[^\]]*\]")
_CLAUSE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_CLAUSE_LABELS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_CREATED_LABEL = re.compile(r"\blabel_(?:replace|join)\(.*?,\s*\"(\w+)\"", re.DOTALL)
_NAME = re.compile(r"(?<![\w:$.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")
_RATE_ARG = re.compile(r"\b(?:rate|irate|increase)\(\s*([A-Za-z_:][\w:]*)")
_LABEL_VALUES = re.compile(
    r"^\s*label_values\(\s*(?:(?P<selector>[^,]+),\s*)?(?P<label>\w+)\s*\)\s*$"
)
_KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "atan2", "inf", "nan", "Inf", "NaN",
}  # fmt: skip


def metric_references(expr: str) -> dict[str, set[str]]:
    """Metric names a PromQL expression selects, each with the label names it matches on."""
    expr = re.sub(r"#[^\n]*", "", expr)
    refs: dict[str, set[str]] = {}

    def keep_name(match: re.Match[str]) -> str:
        labels = {m["label"] for m in _MATCHER_LABEL.finditer(_STRING.sub('""', match["matchers"]))}
        name = match["name"] or "{" + ",".join(sorted(labels)) + "}"
        refs.setdefault(name, set()).update(labels)
        return f" {name} "

    expr = _SELECTOR.sub(keep_name, expr)
    expr = _CLAUSE.sub(" ", _RANGE.sub(" ", _STRING.sub(" ", expr)))
    for name in _NAME.findall(expr):
        if name not in _KEYWORDS:
            refs.setdefault(name, set())
    return refs


def rate_arguments(expr: str) -> set[str]:
    """Names passed straight to rate(), irate() or increase()."""
    return set(_RATE_ARG.findall(_SELECTOR.sub(lambda m: m["name"] or "", expr)))


def clause_labels(expr: str) -> set[str]:
    """Label names in by/without/on/ignoring/group_left/group_right clauses."""
    return {
        label.strip()
        for clause in _CLAUSE_LABELS.findall(_STRING.sub('""', expr))
        for label in clause.split(",")
        if label.strip()
    }


def created_labels(expr: str) -> set[str]:
    """Label names written by label_replace() and label_join()."""
    return set(_CREATED_LABEL.findall(expr))


def contract_entry(
    name: str, extra: Mapping[str, frozenset[str]] = MappingProxyType({})
) -> tuple[str, frozenset[str]] | None:
    """The (type, labels) a series name has under the contract, histogram parts included."""
    if name in extra:
        return ("gauge", extra[name])
    if name in CONTRACT:
        return CONTRACT[name]
    base, _, suffix = name.rpartition("_")
    if suffix in {"bucket", "sum", "count"} and CONTRACT.get(base, ("",))[0] == "histogram":
        labels = CONTRACT[base][1]
        return ("counter", labels | {"le"} if suffix == "bucket" else labels)
    if name in PROMETHEUS_SERIES:
        return ("gauge", PROMETHEUS_SERIES[name])
    return None


def contract_violations(
    expr: str, extra: Mapping[str, frozenset[str]] = MappingProxyType({})
) -> list[str]:
    """Why `expr` leaves the contract: unknown names or labels, rate() over a gauge.

    `extra` adds series beyond the contract (recording rules), with their labels.
    """
    problems = []
    known_labels = set(TARGET_LABELS) | created_labels(expr)
    for name, labels in metric_references(expr).items():
        entry = contract_entry(name, extra)
        if entry is None:
            problems.append(f"{name} is not in the metric contract")
            continue
        known_labels |= entry[1]
        unknown = labels - entry[1] - TARGET_LABELS
        if unknown:
            problems.append(f"{name} has no label(s) {sorted(unknown)}")
    unknown_in_clauses = clause_labels(expr) - known_labels
    if unknown_in_clauses:
        problems.append(f"no selected metric has label(s) {sorted(unknown_in_clauses)}")
    problems.extend(
        f"{name} is a gauge but is passed to rate()/increase()"
        for name in rate_arguments(expr)
        if (entry := contract_entry(name, extra)) is not None and entry[0] == "gauge"
    )
    return problems


# ---------------------------------------------------------------- the files under test


def load_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


RULES = load_rules()
ALERTS = [r for r in RULES if "alert" in r]
# Recorded series and their labels: those the recording expression aggregates by or creates.
RECORDED = {
    r["record"]: frozenset(clause_labels(r["expr"]) | created_labels(r["expr"]))
    for r in RULES
    if "record" in r
}


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and annotation in the dashboard."""
    dashboard = load_dashboard()
    queries = [
        (f"panel {panel['title']!r} {target['refId']}", target["expr"])
        for panel in all_panels(dashboard["panels"])
        for target in panel.get("targets", [])
    ]
    queries += [
        (f"annotation {a['name']!r}", a["expr"])
        for a in dashboard["annotations"]["list"]
        if "expr" in a
    ]
    return queries


def template_queries() -> list[tuple[str, str]]:
    """(variable, query) of the dashboard's Prometheus query variables."""
    variables = load_dashboard()["templating"]["list"]
    return [
        (v["name"], v["query"]["query"] if isinstance(v["query"], dict) else v["query"])
        for v in variables
        if v["type"] == "query"
    ]


def unit_tests() -> list[dict[str, Any]]:
    """Every test group of the promtool rule tests."""
    return [
        test
        for path in RULE_TESTS
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]
    ]


def unit_test_cases() -> list[tuple[str, bool]]:
    """(alertname, expects any firing alert) for every alert_rule_test in the promtool tests."""
    return [
        (case["alertname"], bool(case.get("exp_alerts")))
        for test in unit_tests()
        for case in test.get("alert_rule_test", [])
    ]


def documented_metrics() -> dict[str, tuple[str, frozenset[str]]]:
    """The `| metric | type | labels | meaning |` rows of docs/metrics.md."""
    row = re.compile(r"^\| `(fotawatch_\w+)` \| (\w+) \| ([^|]*) \|", re.MULTILINE)
    return {
        name: (kind, frozenset(re.findall(r"`(\w+)`", labels)))
        for name, kind, labels in row.findall(METRICS_DOC.read_text(encoding="utf-8"))
    }


def promtool_ok(*args: str | Path) -> None:
    result = run_tool("promtool", *args)
    assert result.returncode == 0, f"promtool {args}:\n{result.stdout}\n{result.stderr}"


# ---------------------------------------------------------------- the extractor itself


def test_metric_references_finds_selected_names_and_matcher_labels() -> None:
    """The PromQL scanner returns metric names and matched labels, not functions or clauses."""
    expr = """
        histogram_quantile(0.99, sum by (le, sink) (rate(a_bucket{sink=~"x|y"}[$__rate_interval])))
        * on (account) group_left (campaign_name) topk by (account) (1, b_info)  # comment c_d
        > bool label_replace(vector(1), "s", "$1", "t", "(.*)") unless c:rec offset 5m
    """
    expected = {"a_bucket": {"sink"}, "b_info": set(), "c:rec": set()}
    assert expected == metric_references(expr)
    assert {"a_bucket"} == rate_arguments(expr)


def test_contract_violations_reports_unknown_names_labels_and_rate_of_gauges() -> None:
    """A typo in a name, matcher or clause label, or rate() over a gauge, is reported."""
    expr = (
        'fotawatch_campaign_stauts + fotawatch_campaign_status{stauts="x"}'
        " + rate(fotawatch_campaign_missing[5m]) + rate(fotawatch_poll_duration_seconds_count[5m])"
        " + on (acount) fotawatch_polls_total"
    )
    expected = [
        "fotawatch_campaign_stauts is not in the metric contract",
        "fotawatch_campaign_status has no label(s) ['stauts']",
        "fotawatch_campaign_missing is a gauge but is passed to rate()/increase()",
        "no selected metric has label(s) ['acount']",
    ]
    assert sorted(expected) == sorted(contract_violations(expr))


# ---------------------------------------------------------------- promtool


@pytest.mark.external
def test_rule_file_passes_promtool_check() -> None:
    """promtool check rules accepts deploy/prometheus/fotawatch-rules.yml."""
    promtool_ok("check", "rules", RULES_FILE)


@pytest.mark.external
def test_rule_unit_tests_pass() -> None:
    """promtool test rules passes every test file in deploy/prometheus/tests/."""
    assert RULE_TESTS, "no promtool rule tests found"
    promtool_ok("test", "rules", *RULE_TESTS)


@pytest.mark.external
def test_scrape_snippet_with_rules_passes_promtool_check_config(tmp_path: Path) -> None:
    """A prometheus.yml made of the shipped scrape job and rule file passes promtool."""
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(build_config()), encoding="utf-8")
    promtool_ok("check", "config", config)


@pytest.mark.external
def test_optional_tls_and_basic_auth_blocks_are_valid_once_uncommented(tmp_path: Path) -> None:
    """Uncommenting the optional TLS/basic-auth block of scrape.yml gives a valid config."""
    lines = SCRAPE_FILE.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if "uncomment the lines below" in line)
    enabled = lines[: start + 1] + [re.sub(r"^    # ", "    ", line) for line in lines[start + 1 :]]
    text = "\n".join(enabled).replace("/etc/prometheus/fotawatch/", f"{tmp_path}/")
    for name in ("ca.crt", "client.crt", "client.key", "password"):
        (tmp_path / name).write_text("placeholder\n", encoding="utf-8")
    scrape_file = tmp_path / "scrape.yml"
    scrape_file.write_text(text, encoding="utf-8")
    config = build_config(scrape_file=scrape_file)
    (job,) = config["scrape_configs"]
    assert ("https", "prometheus") == (job["scheme"], job["basic_auth"]["username"])
    assert {"ca_file", "cert_file", "key_file", "server_name"} <= job["tls_config"].keys()
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    promtool_ok("check", "config", config_file)


# ---------------------------------------------------------------- rules against the contract


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.get("alert") or r.get("record"))
def test_rule_uses_only_contract_metrics_and_labels(rule: dict[str, Any]) -> None:
    """Each rule expression selects only contract metrics (or recorded series) and their labels."""
    assert [] == contract_violations(rule["expr"], extra=RECORDED)


@pytest.mark.parametrize("alert", ALERTS, ids=lambda r: r["alert"])
def test_alert_has_severity_summary_and_description(alert: dict[str, Any]) -> None:
    """Each alert has a known severity, a summary and a description; campaign alerts name it."""
    assert alert["labels"]["severity"] in SEVERITIES
    assert {"summary", "description"} <= alert["annotations"].keys()
    if "fotawatch_campaign_" in alert["expr"]:
        for text in (alert["annotations"]["summary"], alert["annotations"]["description"]):
            assert "$labels.campaign_name" in text
            assert "$labels.campaign_id" in text


@pytest.mark.parametrize("alert", ALERTS, ids=lambda r: r["alert"])
def test_alert_has_unit_tests_where_it_fires_and_where_it_does_not(alert: dict[str, Any]) -> None:
    """Each alert has a promtool case expecting it to fire and one expecting silence."""
    cases = {fires for name, fires in unit_test_cases() if name == alert["alert"]}
    assert {True, False} == cases


@pytest.mark.parametrize("record", sorted(RECORDED))
def test_recording_rule_has_a_unit_test_with_samples(record: str) -> None:
    """Each recording rule is checked by a promtool promql_expr_test expecting samples."""
    cases = [
        case
        for test in unit_tests()
        for case in test.get("promql_expr_test", [])
        if record in metric_references(case["expr"]) and case.get("exp_samples")
    ]
    assert cases


def test_unit_tests_name_only_existing_alerts() -> None:
    """The promtool tests test no alert that the rule file lacks (e.g. after a rename)."""
    assert set() == {name for name, _ in unit_test_cases()} - {a["alert"] for a in ALERTS}


# ---------------------------------------------------------------- docs/metrics.md


def test_metrics_doc_documents_exactly_the_contract() -> None:
    """docs/metrics.md lists every contract metric with its type and labels, and no others."""
    assert CONTRACT == documented_metrics()


def test_metrics_doc_lists_every_alert_and_recording_rule() -> None:
    """docs/metrics.md names every alert and recorded series of the rule file."""
    doc = METRICS_DOC.read_text(encoding="utf-8")
    names = {a["alert"] for a in ALERTS} | set(RECORDED)
    assert set() == {name for name in names if f"`{name}`" not in doc}


# ---------------------------------------------------------------- the Grafana dashboard


def test_dashboard_is_a_grafana_dashboard_with_datasource_and_account_variables() -> None:
    """The dashboard parses, uses schema 39, a datasource variable, and an account filter."""
    dashboard = load_dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    panels = list(all_panels(dashboard["panels"]))
    assert 39 == dashboard["schemaVersion"]
    assert ("datasource", "prometheus") == (
        variables["DS_PROMETHEUS"]["type"],
        variables["DS_PROMETHEUS"]["query"],
    )
    assert variables["account"]["includeAll"]
    assert len(panels) == len({p["id"] for p in panels}), "panel ids must be unique"
    queried = [p for p in panels if p["type"] != "row"]
    assert all(p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in queried)
    assert all(t["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in queried for t in p["targets"])


@pytest.mark.parametrize(("where", "expr"), dashboard_queries(), ids=lambda v: str(v)[:60])
def test_dashboard_query_uses_only_contract_metrics_and_labels(where: str, expr: str) -> None:
    """Each dashboard query selects only contract metrics and their labels."""
    assert [] == contract_violations(expr), where


def test_dashboard_variables_query_contract_metrics() -> None:
    """The dashboard's label_values() variables read contract metrics and labels."""
    for name, query in template_queries():
        match = _LABEL_VALUES.match(query)
        assert match, f"variable {name}: unsupported query {query!r}"
        selector = match["selector"] or ""
        assert [] == contract_violations(selector), name
        for metric in metric_references(selector):
            assert match["label"] in contract_entry(metric)[1], name


def test_dashboard_covers_the_requested_views() -> None:
    """The dashboard has the status table, transitions, polling, auth and notification panels."""
    titles = {p["title"] for p in all_panels(load_dashboard()["panels"])}
    wanted = {
        "Campaign status",
        "Status transitions",
        "Poll success rate",
        "Poll latency",
        "Auth requests",
        "Login circuit",
        "Notification delivery",
        "Notification queue depth",
    }
    assert set() == wanted - titles


def test_every_metric_an_alert_fires_on_has_a_panel() -> None:
    """Whoever is paged can see the series behind the alert on the dashboard."""
    on_dashboard = {name for _, expr in dashboard_queries() for name in metric_references(expr)}
    missing = {
        (alert["alert"], name)
        for alert in ALERTS
        for name in metric_references(alert["expr"])
        if name not in RECORDED and name not in on_dashboard
    }
    assert missing == set()


# ---------------------------------------------------------------- a real Prometheus

FAILING_CAMPAIGN = """\
# HELP fotawatch_campaign_status Current status of the campaign (1) among the known ones (0).
# TYPE fotawatch_campaign_status gauge
fotawatch_campaign_status{account="acme",campaign_id="c-1",status="CampaignScheduled"} 0
fotawatch_campaign_status{account="acme",campaign_id="c-1",status="CampaignFailed"} 1
# HELP fotawatch_campaign_info Properties of the campaign.
# TYPE fotawatch_campaign_info gauge
fotawatch_campaign_info{account="acme",campaign_id="c-1",campaign_name="Spring rollout",\
make="Acme",model="T1",protocol="LWM2M",firmware_from="1.0.0",firmware_to="1.1.0"} 1
# HELP fotawatch_campaign_polling 1 while the campaign is polled.
# TYPE fotawatch_campaign_polling gauge
fotawatch_campaign_polling{account="acme",campaign_id="c-1"} 0
"""


@contextlib.asynccontextmanager
async def serving_exposition(text: str) -> AsyncIterator[str]:
    """Serve `text` as /metrics on a free 127.0.0.1 port; yield the host:port target."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            text=text, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield f"{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.external
@pytest.mark.slow
async def test_prometheus_scrapes_a_failed_campaign_and_raises_the_alert(tmp_path: Path) -> None:
    """A real Prometheus with the shipped config and rules scrapes a failed campaign and alerts."""
    async with (
        serving_exposition(FAILING_CAMPAIGN) as target,
        running_prometheus(target, tmp_path) as prom,
    ):

        async def failed_alerts() -> list[dict[str, Any]]:
            alerts = await prom.alerts()
            return [a for a in alerts if a["labels"]["alertname"] == "FotawatchCampaignFailed"]

        series = await prom.wait_for(
            lambda: prom.query('fotawatch_campaign_status{status="CampaignFailed"} == 1'),
            what="the scraped CampaignFailed series",
        )
        (alert,) = await prom.wait_for(failed_alerts, what="FotawatchCampaignFailed")

    expected_series = {"job": "fotawatch", "instance": target, "account": "acme"}
    assert expected_series.items() <= series[0]["metric"].items()
    assert alert["state"] in {"pending", "firing"}
    expected_labels = {
        "alertname": "FotawatchCampaignFailed",
        "account": "acme",
        "campaign_id": "c-1",
        "campaign_name": "Spring rollout",
        "status": "CampaignFailed",
        "severity": "critical",
    }
    assert expected_labels == alert["labels"]
    expected_summary = 'FOTA campaign "Spring rollout" (acme/c-1) is CampaignFailed'
    assert expected_summary == alert["annotations"]["summary"]


@pytest.mark.external
@pytest.mark.slow
async def test_rules_and_dashboard_queries_evaluate_without_errors(tmp_path: Path) -> None:
    """Prometheus evaluates every shipped rule and every dashboard query without an error."""
    grafana_variables = {"$__rate_interval": "1m", "$__interval": "1m", "$account": ".*"}
    async with (
        serving_exposition(FAILING_CAMPAIGN) as target,
        running_prometheus(target, tmp_path) as prom,
    ):

        async def evaluated_rules() -> list[dict[str, Any]]:
            rules = await prom.rules()
            return rules if all(r["health"] != "unknown" for r in rules) else []

        rules = await prom.wait_for(evaluated_rules, what="a first evaluation of every rule")
        for where, expr in dashboard_queries():
            for variable, value in grafana_variables.items():
                expr = expr.replace(variable, value)  # noqa: PLW2901 - substituting in place
            await prom.query(expr)  # raises on a PromQL error, naming the query
            assert "$" not in expr.replace('"$1"', ""), f"unsubstituted variable in {where}"

    assert [] == [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert len(RULES) == len(rules)
