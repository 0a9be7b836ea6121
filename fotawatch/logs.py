"""structlog set-up: JSON lines for journald, readable console on a TTY, secrets redacted.

- Not on a TTY (systemd, pipes): one JSON object per line on stdout. Under systemd
  (``JOURNAL_STREAM`` set) each line starts with a ``<N>`` syslog priority, so
  ``journalctl -p err`` shows only errors.
- Redaction happens twice: keys that name secrets (password, token, webhook_url, ...) are
  replaced whatever their value, and every known secret *value* (registered with
  ``Redactor.add``: the credentials, the tokens, the webhook URLs) is replaced wherever it appears
  in any string, exception text included.
- Tracebacks never carry local variables (structlog's default would put them in JSON logs).
- Third-party stdlib logging (aiohttp, apscheduler) goes through the same renderer. aiohttp logs
  every malformed request (a client's fault, answered 400) as an error with a traceback; those
  show only at level debug, so nobody on the network can fill the journal's error log.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

import structlog
from aiohttp.http_exceptions import HttpProcessingError
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["REDACTED", "Redactor", "configure_logging", "journal_prefix"]

REDACTED = "[redacted]"
_SECRET_KEY_PARTS = ("password", "secret", "token", "authorization", "webhook_url", "api_key")
_PRIORITY = {"critical": 2, "exception": 3, "error": 3, "warning": 4, "info": 6, "debug": 7}


class Redactor:
    """A structlog processor that removes secrets by key and by value.

    Two kinds of value: the configured secrets (``add``), kept for the life of the process, and
    the tokens the client obtains (``rotate``), of which only the newest ``ROTATING_KEPT`` are
    kept. Tokens are renewed all day long; keeping every one would make each log line scan a
    list that grows by about a hundred values a day. A token ``ROTATING_KEPT`` renewals old has
    expired long since, and nothing holds it any more.
    """

    ROTATING_KEPT = 16

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._fixed: set[str] = set()
        self._rotating: dict[str, None] = {}  # insertion-ordered: the oldest first
        self._values: tuple[str, ...] = ()
        self.add(*secrets)

    def add(self, *values: str | None) -> None:
        """Register secret values (short ones are ignored: redacting "a" would mangle logs)."""
        self._fixed.update(v for v in values if v and len(v) >= 4)
        self._refresh()

    def rotate(self, *values: str | None) -> None:
        """Register renewed tokens; the oldest beyond ``ROTATING_KEPT`` are forgotten."""
        for value in values:
            if value and len(value) >= 4 and value not in self._fixed:
                self._rotating.pop(value, None)
                self._rotating[value] = None
        while len(self._rotating) > self.ROTATING_KEPT:
            del self._rotating[next(iter(self._rotating))]
        self._refresh()

    def _refresh(self) -> None:
        # Longest first: a secret that contains another is replaced whole, not in part.
        self._values = tuple(sorted(self._fixed | self._rotating.keys(), key=len, reverse=True))

    @property
    def values(self) -> tuple[str, ...]:
        """The secret values replaced, longest first."""
        return self._values

    def clean(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.clean(value)
        if isinstance(value, Mapping):
            return {k: self._item(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._value(v) for v in value]
        return value

    def _item(self, key: str, value: Any) -> Any:
        lowered = key.lower()
        if any(part in lowered for part in _SECRET_KEY_PARTS) and value is not None:
            return REDACTED
        return self._value(value)

    def __call__(self, _: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        return {k: self._item(k, v) for k, v in event_dict.items()}


def journal_prefix(_: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """Remember the syslog priority for the renderer (``<3>`` for errors, ...)."""
    event_dict["_priority"] = _PRIORITY.get(event_dict.get("level", method), 6)
    return event_dict


class _JsonLines:
    """Render JSON, prefixed with ``<N>`` when journald reads our stdout."""

    def __init__(self, *, journald: bool) -> None:
        self._journald = journald

    def __call__(self, _: WrappedLogger, __: str, event_dict: EventDict) -> str:
        priority = event_dict.pop("_priority", 6)
        line = json.dumps(event_dict, default=str, ensure_ascii=False)
        return f"<{priority}>{line}" if self._journald else line


def _drop_priority(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    event_dict.pop("_priority", None)
    return event_dict


def configure_logging(
    *,
    level: str = "info",
    fmt: str = "auto",
    redactor: Redactor | None = None,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> Redactor:
    """Configure structlog and stdlib logging once for the process; returns the redactor."""
    env = os.environ if environ is None else environ
    out = stream or sys.stdout
    redactor = Redactor() if redactor is None else redactor
    console = fmt == "console" or (fmt == "auto" and out.isatty())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if console:
        tail: list[Processor] = [
            _drop_priority,
            structlog.dev.ConsoleRenderer(
                exception_formatter=structlog.dev.plain_traceback, sort_keys=False
            ),
        ]
    else:
        tail = [
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            _JsonLines(journald="JOURNAL_STREAM" in env),
        ]
    # Redaction runs after exceptions are rendered to text (JSON) so their text is cleaned too;
    # on the console the traceback text is rendered last, so exception messages carry no secrets
    # by construction (ApiError messages hold codes, not bodies).
    chain: list[Processor] = [*shared, journal_prefix]
    chain += [tail[0], redactor, tail[1]] if not console else [redactor, *tail]
    structlog.configure(
        processors=chain,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    _route_stdlib(level, chain, out)
    return redactor


def _client_errors_at_debug(record: logging.LogRecord) -> bool:
    """Let aiohttp's "Error handling request" for a bad request through only at level debug."""
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, HttpProcessingError) and (exc.code or 400) < 500:
        return logging.getLogger().isEnabledFor(logging.DEBUG)
    return True


def _route_stdlib(level: str, chain: list[Processor], out: TextIO) -> None:
    """Send aiohttp/apscheduler records through the same processors."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *chain[:-1]],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, chain[-1]],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.getLevelNamesMapping()[level.upper()])
    # APScheduler logs every job run at INFO: one line per poll is noise at 10,000 campaigns.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(_client_errors_at_debug)  # added once
