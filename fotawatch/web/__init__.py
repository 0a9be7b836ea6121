"""The status page and the JSON API: every campaign at a glance, in a browser or a script.

Server-rendered HTML with a little CSS and JavaScript (no build step; it works with JavaScript
off) and ``/api/v1/campaigns`` documented in ``docs/openapi.yaml``. Pieces:

- ``source``: ``CampaignSource``, the callables the pages read (views, history, progress).
- ``rows``: ``CampaignRow``, one campaign as both renderings show it (pure).
- ``pages``: the HTML (pure, everything escaped); ``assets``: the stylesheet and the script.
- ``handlers``: the aiohttp routes; ``server.make_app`` adds them when given a source.
"""

from __future__ import annotations

from fotawatch.web.handlers import add_routes
from fotawatch.web.source import (
    CampaignSource,
    DeviceCounts,
    DeviceProgress,
    HistorySource,
    ProgressSource,
    store_history,
)

__all__ = [
    "CampaignSource",
    "DeviceCounts",
    "DeviceProgress",
    "HistorySource",
    "ProgressSource",
    "add_routes",
    "store_history",
]
