"""Alerts: what is worth saying (payloads), to whom (policy), and how it reads (render).

The flow: the poller and the condition checks build *payloads* (plain JSON dicts) and queue one
outbox row per sink that ``policy.wants`` it, keyed by ``payloads.dedup_key``. A sink's sender
takes the rows that are due, renders them together at send time (``render.render_slack``,
``render.render_webhook``) and marks them sent.

This package's ``__init__`` imports only the pure modules (``payloads``, ``policy``, ``render``),
so importing ``fotawatch.alerts.policy`` never drags in aiohttp or asyncio; the I/O modules
(outbox, senders) are imported by their full names.
"""

from fotawatch.alerts.payloads import (
    Condition,
    ConditionState,
    Payload,
    PayloadType,
    Progress,
    condition_payload,
    dedup_key,
    milestone_payload,
    test_payload,
    transition_payload,
    watching_payload,
)
from fotawatch.alerts.policy import SinkFilter, wants
from fotawatch.alerts.render import (
    render_console,
    render_slack,
    render_webhook,
    validate_slack_message,
)

__all__ = [
    "Condition",
    "ConditionState",
    "Payload",
    "PayloadType",
    "Progress",
    "SinkFilter",
    "condition_payload",
    "dedup_key",
    "milestone_payload",
    "render_console",
    "render_slack",
    "render_webhook",
    "test_payload",
    "transition_payload",
    "validate_slack_message",
    "wants",
    "watching_payload",
]
