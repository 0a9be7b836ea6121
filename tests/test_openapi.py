"""docs/openapi.yaml against the live daemon: schemathesis fuzzes the JSON API and every answer
must match the document (status codes, content types, bodies), never a 5xx."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import requests
import schemathesis
from support import ACCOUNT
from web_live import IDS, PROGRESS, live_pages

pytestmark = pytest.mark.slow

SPEC = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
OTHER_ACCOUNT = "0999999999-00002"


async def _schemathesis(url: str, report: Path, workdir: Path) -> tuple[int, str]:
    """The schemathesis CLI (its pytest plugin is not used: the daemon runs on this loop)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        str(SPEC),
        "--url",
        url,
        "--checks",
        "all",
        "--max-examples",
        "40",
        "--seed",
        "1",
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
        "--no-color",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=workdir,  # its .schemathesis/ cache stays out of the repository
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 240)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def test_schemathesis_finds_no_departure_from_the_document(tmp_path: Path) -> None:
    """Every schemathesis check passes against a daemon watching six campaigns, one id in two
    accounts (so 409 is reachable) and one with device progress."""
    twin = {
        "account": OTHER_ACCOUNT,
        "id": IDS["failed"],
        "name": "twin",
        "status": "CampaignEnded",
    }
    async with live_pages(tmp_path, extra=[twin], progress=PROGRESS) as live:
        ARTIFACTS.mkdir(exist_ok=True)
        code, output = await _schemathesis(live.url, ARTIFACTS / "schemathesis-junit.xml", tmp_path)
    (ARTIFACTS / "schemathesis.txt").write_text(output, encoding="utf-8")
    assert 0 == code, output[-6000:]


async def test_real_answers_validate_against_the_document(tmp_path: Path) -> None:
    """The list, a campaign with transitions, a 409, a 404 and a 400 each match the document."""
    schema = schemathesis.openapi.from_path(SPEC)
    listing = schema["/api/v1/campaigns"]["GET"]
    detail = schema["/api/v1/campaigns/{id}"]["GET"]
    twin = {
        "account": OTHER_ACCOUNT,
        "id": IDS["failed"],
        "name": "twin",
        "status": "CampaignEnded",
    }
    async with live_pages(tmp_path, extra=[twin], progress=PROGRESS) as live:
        api = f"{live.url}/api/v1/campaigns"
        cases = [
            (listing, api, 200),
            (detail, f"{api}/{IDS['scheduled']}", 200),
            (detail, f"{api}/{IDS['failed']}?account={ACCOUNT}", 200),
            (detail, f"{api}/{IDS['failed']}", 409),
            (detail, f"{api}/nope", 404),
            (detail, f"{api}/{IDS['scheduled']}?limit=0", 400),
        ]
        answers = [await asyncio.to_thread(requests.get, url, timeout=10) for _, url, _ in cases]
    assert [status for *_, status in cases] == [a.status_code for a in answers]
    for (operation, _, _), answer in zip(cases, answers, strict=True):
        operation.validate_response(answer)
    failed = answers[2].json()
    assert [None] == [t["from_status"] for t in failed["transitions"]]
    assert [ACCOUNT, OTHER_ACCOUNT] == sorted(answers[3].json()["accounts"])
