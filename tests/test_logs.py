"""The log redactor: secrets go by key and by value; renewed tokens do not pile up."""

from __future__ import annotations

import io
from pathlib import Path

import structlog

from fotawatch.app import Daemon
from fotawatch.logs import REDACTED, Redactor, configure_logging


def _render(redactor: Redactor, **event: object) -> dict[str, object]:
    return redactor(None, "info", dict(event))


def test_values_are_redacted_wherever_they_appear() -> None:
    redactor = Redactor(["s3cret-password"])
    out = _render(redactor, event="login_failed", error="bad s3cret-password here",
                  nested={"detail": ["x", "s3cret-password"]}, count=3)  # fmt: skip
    assert out == {"event": "login_failed", "error": f"bad {REDACTED} here",
                   "nested": {"detail": ["x", REDACTED]}, "count": 3}  # fmt: skip


def test_keys_that_name_secrets_are_redacted_whatever_the_value() -> None:
    out = _render(Redactor(), event="e", webhook_url="https://hooks.example/x", api_key=None,
                  sessionToken="abc", url="https://example.org")  # fmt: skip
    assert out["webhook_url"] == REDACTED
    assert out["sessionToken"] == REDACTED
    assert out["api_key"] is None  # nothing to hide
    assert out["url"] == "https://example.org"


def test_short_values_are_not_registered() -> None:
    redactor = Redactor(["abc", ""])
    assert redactor.values == ()
    assert redactor.clean("abc") == "abc"


def test_a_secret_containing_another_is_replaced_whole() -> None:
    redactor = Redactor(["tokn", "tokn-and-more"])
    assert redactor.clean("x tokn-and-more y tokn") == f"x {REDACTED} y {REDACTED}"


def test_renewed_tokens_are_bounded_and_fixed_secrets_stay() -> None:
    redactor = Redactor(["client-secret-value"])
    kept = Redactor.ROTATING_KEPT
    tokens = [f"token-{i:04d}" for i in range(kept * 10)]
    for token in tokens:
        redactor.rotate("client-secret-value", token)  # the credentials come along each time
    assert len(redactor.values) == kept + 1
    assert redactor.clean("client-secret-value") == REDACTED
    newest = tokens[-kept:]
    assert all(redactor.clean(t) == REDACTED for t in newest)
    assert redactor.clean(tokens[-kept - 1]) == tokens[-kept - 1]  # long expired: forgotten


def test_a_token_seen_again_counts_as_new() -> None:
    redactor = Redactor()
    redactor.rotate("token-still-in-use")
    for i in range(Redactor.ROTATING_KEPT - 1):
        redactor.rotate(f"other-token-{i}")
    redactor.rotate("token-still-in-use")  # still current: moves to the newest end
    redactor.rotate("one-more-token")
    assert redactor.clean("token-still-in-use") == REDACTED
    assert redactor.clean("other-token-0") == "other-token-0"


def test_the_daemon_feeds_the_redactor_that_the_logs_go_through(tmp_path: Path) -> None:
    """The redactor configure_logging returns starts empty; the daemon must fill that one, not
    a fresh one of its own (an empty redactor must not count as "none given")."""
    out = io.StringIO()
    redactor = configure_logging(level="info", fmt="json", stream=out, environ={})
    try:
        daemon = Daemon(tmp_path / "fotawatch.yaml", redactor=redactor)
        assert daemon.redactor is redactor
        daemon.redactor.rotate("tok-abcdef-0123")
        structlog.get_logger("t").info("login", detail="sent tok-abcdef-0123")
        assert "tok-abcdef-0123" not in out.getvalue()
        assert REDACTED in out.getvalue()
    finally:
        configure_logging(level="info", fmt="json", environ={})
