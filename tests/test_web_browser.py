"""The status page in headless Chromium (Debian's, driven by Playwright) against a live daemon
polling the simulator: table content, the filter with and without JavaScript, the in-place
refresh, the campaign page. Screenshots go to test-artifacts/."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page, async_playwright, expect
from support import ACCOUNT, wait_for
from tools import require_tool
from web_live import EVIL, IDS, NAMES, PROGRESS, STATUSES, live_pages

pytestmark = [pytest.mark.external, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 15_000  # Playwright's expect() polls the page until then; it never sleeps blindly


@contextlib.asynccontextmanager
async def chromium(profile: Path, *, javascript: bool = True) -> AsyncIterator[BrowserContext]:
    """Debian's Chromium with a fresh profile (its --user-data-dir)."""
    executable = require_tool("chromium")
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=executable,
            args=FLAGS,
            headless=True,
            java_script_enabled=javascript,
            viewport={"width": 1500, "height": 900},
        )
        try:
            yield context
        finally:
            await context.close()


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / name), full_page=True)


async def test_status_page_shows_filters_and_refreshes_in_chromium(tmp_path: Path) -> None:
    """Every campaign is listed (the <script> name as text, no dialog), the filter narrows the
    table without a reload, a refresh brings in a change and keeps the filter; the campaign page
    shows the transition."""
    async with (
        live_pages(tmp_path, progress=PROGRESS, refresh=1) as live,
        chromium(tmp_path / "profile") as browser,
    ):
        page = await browser.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: dialogs.append(dialog.message))
        await page.goto(live.url + "/")
        names = page.locator("#campaigns tbody th[scope=row] a")
        await expect(names).to_have_count(5)
        assert sorted(NAMES.values()) == sorted(await names.all_text_contents())
        bar = page.get_by_role("img", name="92 of 100 upgraded, 3 failed")
        await expect(bar).to_be_visible()
        await shot(page, "status-page.png")

        await page.evaluate("window.notReloaded = true")
        await page.select_option("#status", "CampaignScheduled")
        await expect(page).to_have_url(re.compile(r"\?status=CampaignScheduled$"))
        await expect(names).to_have_text([NAMES["scheduled"]], timeout=WAIT_MS)

        live.set_status("queued", "CampaignScheduled")
        await wait_for(lambda: live.status_of("queued") == "CampaignScheduled", what="poll")
        await expect(names).to_have_text([EVIL, NAMES["scheduled"]], timeout=WAIT_MS)
        await expect(page.locator("#status")).to_have_value("CampaignScheduled")
        await expect(page).to_have_url(re.compile(r"\?status=CampaignScheduled$"))
        assert await page.evaluate("window.notReloaded === true")
        await shot(page, "status-page-filtered.png")

        await names.first.click()
        await expect(page.locator("h2")).to_have_text(EVIL)
        history = page.locator("#transitions tbody tr").first.locator("td")
        await expect(history.nth(2)).to_have_text("CampaignRequestQueued")
        await expect(history.nth(3)).to_have_text("CampaignScheduled")
        await shot(page, "campaign-page.png")

        await page.goto(f"{live.url}/campaigns/{IDS['scheduled']}?account={ACCOUNT}")
        devices = page.get_by_role("table", name="Devices by report status")
        await expect(devices.locator("tbody th")).to_have_text(
            ["UpgradeSuccess", "NoDeviceDataFromNetwork", "UpgradeFailed"]
        )
        await shot(page, "campaign-page-devices.png")
    assert [] == dialogs


async def test_filter_works_with_javascript_off_in_chromium(tmp_path: Path) -> None:
    """With JavaScript disabled the form's Filter button loads ?status=… and the table shows
    only that status."""
    async with (
        live_pages(tmp_path) as live,
        chromium(tmp_path / "profile", javascript=False) as browser,
    ):
        page = await browser.new_page()
        await page.goto(live.url + "/")
        names = page.locator("#campaigns tbody th[scope=row] a")
        await expect(names).to_have_count(len(STATUSES))
        await page.get_by_label("Status").select_option("CampaignFailed")
        await page.get_by_role("button", name="Filter").click()
        await expect(page).to_have_url(re.compile(r"/\?status=CampaignFailed$"))
        await expect(names).to_have_text([NAMES["failed"]])
        await expect(page.locator("#summary")).to_contain_text("Showing 1 of 5 campaigns")
        assert IDS["failed"] in (await names.get_attribute("href") or "")
        await shot(page, "status-page-no-js.png")
