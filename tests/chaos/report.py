"""The chaos table of docs/reliability.md from the summaries a run wrote.

    FOTAWATCH_CHAOS_REPORT=/tmp/chaos .venv/bin/pytest -m chaos tests/chaos
    .venv/bin/python tests/chaos/report.py /tmp/chaos
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ORDER = ["api-5xx-bursts", "api-hangs", "api-429-storm", "api-html-truncated", "session-expiry",
         "oauth-revoked", "api-down", "slack-down", "slack-429", "slack-slow",
         "slack-accept-timeout", "kill-9", "sighup-storm", "store-unwritable"]  # fmt: skip


def _injected(s: dict[str, Any]) -> str:
    counts = [f"{n} {kind}" for kind, n in sorted(s["api_faults"].items())]
    if s["slack_refused"]:
        counts.append(f"{s['slack_refused']} Slack posts refused")
    counts += [f"{s[k]} {k}" for k in ("kills", "sighups") if s[k]]
    return s["faults"] + (f" ({', '.join(counts)})" if counts else "")


def _alerts(s: dict[str, Any]) -> str:
    extra = ", ".join(f"{k} {n}" for k, n in sorted(s["conditions"].items()))
    return f"{s['alerts']}/{s['recorded']}" + (f" + {extra}" if extra else "")


def row(s: dict[str, Any]) -> str:
    cells = [s["scenario"], _injected(s), str(s["transitions"]), _alerts(s), str(s["lost"]),
             str(s["duplicated"]), f"{s['result']} ({s['seconds']:g} s)"]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def main(directory: str) -> None:
    summaries = {p.stem: json.loads(p.read_text()) for p in Path(directory).glob("*.json")}
    names = [n for n in ORDER if n in summaries] + sorted(set(summaries) - set(ORDER))
    print("| scenario | faults injected | transitions | alerts delivered | lost | duplicated "
          "| result |")
    print("|---|---|---:|---|---:|---:|---|")
    for name in names:
        print(row(summaries[name]))


if __name__ == "__main__":
    main(sys.argv[1])
