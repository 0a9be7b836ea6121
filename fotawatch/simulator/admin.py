"""The ``/_sim/`` admin endpoints: the in-process control methods over HTTP, as JSON.

    GET    /_sim/stats                                  -> the stats() dict
    POST   /_sim/campaigns/{account}/{id}/status         {"status": "..."}
    POST   /_sim/campaigns                              a scenario campaign entry  -> 201
    DELETE /_sim/campaigns/{account}/{id}
    POST   /_sim/expire-sessions | /_sim/revoke-tokens | /_sim/unlock
    PUT    /_sim/faults                                 a list of fault entries
    DELETE /_sim/faults
    PUT    /_sim/credentials                            {"password": "...", ...}

Answers ``{"ok": true}`` on success, ``{"error": "..."}`` with 400 (bad input) or 404 (unknown
campaign). Admin requests are not counted and never hit injected faults.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from fotawatch.simulator.api import json_response
from fotawatch.simulator.state import SimState

__all__ = ["admin_routes"]

Action = Callable[[web.Request, Any], object]


def admin_routes(state: SimState) -> list[web.RouteDef]:
    """The admin routes acting on ``state``."""
    base = "/_sim"
    one = f"{base}/campaigns/{{account}}/{{campaign_id}}"
    return [
        web.get(f"{base}/stats", _stats(state)),
        web.post(f"{one}/status", _control(lambda r, b: state.set_status(*_key(r), _status(b)))),
        web.post(f"{base}/campaigns", _control(lambda _, body: state.add_campaign(body), 201)),
        web.delete(one, _control(lambda r, _: state.remove_campaign(*_key(r)))),
        web.post(f"{base}/expire-sessions", _control(lambda *_: state.expire_sessions())),
        web.post(f"{base}/revoke-tokens", _control(lambda *_: state.revoke_tokens())),
        web.post(f"{base}/unlock", _control(lambda *_: state.unlock())),
        web.put(f"{base}/faults", _control(lambda _, body: state.set_faults(body))),
        web.delete(f"{base}/faults", _control(lambda *_: state.clear_faults())),
        web.put(f"{base}/credentials", _control(lambda _, b: state.set_credentials(_mapping(b)))),
    ]


def _stats(state: SimState) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def stats(_request: web.Request) -> web.Response:
        return json_response(state.stats())

    return stats


def _control(action: Action, status: int = 200) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def control(request: web.Request) -> web.Response:
        try:
            body = await request.json() if request.can_read_body else None
            action(request, body)
        except KeyError as err:
            return json_response({"error": f"no campaign {err.args[0]}"}, 404)
        except (ValueError, TypeError) as err:
            return json_response({"error": str(err)}, 400)
        return json_response({"ok": True}, status)

    return control


def _key(request: web.Request) -> tuple[str, str]:
    return request.match_info["account"], request.match_info["campaign_id"]


def _mapping(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise TypeError("expected a JSON object")
    return body


def _status(body: object) -> str:
    status = _mapping(body).get("status")
    if not isinstance(status, str) or not status:
        raise ValueError("status: expected a non-empty string")
    return status
