"""The console in a real browser: Playwright for Python driving Debian's Chromium against a
VTN with a small simulated fleet (three VEN agents on the sim adapter, 1 s polls).

Screenshots of every page go to $FLEXADR_ARTIFACTS/console (else the test's tmp dir);
docs/console/*.png are copies of them. CI installs Chromium and sets
FLEXADR_REQUIRE_BROWSER=1, so there the test runs or fails, never skips.
"""
import asyncio
import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import pytest

from flexadr.clock import ManualClock
from flexadr.demo import _free_port
from schedules import model
from tests.harness import eventually, running_site
from ven.openadr20b.link import REGISTER_RETRY
from vtn import auth, lifecycle
from vtn.programs import ensure_program

CHROMIUM = "/usr/bin/chromium"
try:
    from playwright.async_api import async_playwright, expect
except ImportError:           # the test extra is not installed
    async_playwright = None
REQUIRED = os.environ.get("FLEXADR_REQUIRE_BROWSER") == "1"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not REQUIRED and (async_playwright is None or not os.path.exists(CHROMIUM)),
                       reason=f"needs playwright (pip install -e .[test]) and {CHROMIUM}"),
    pytest.mark.timeout(150),
]
PASSWORD = "correct horse battery"
VENS = ("ven-a", "ven-b", "ven-c")
TIME_SCALE = 300          # the program's 15-minute reports every 3 s of wall time
WAIT_MS = 30_000          # longest wait for one thing to show (a bound, not a measurement)


def artifacts(tmp_path) -> Path:
    folder = Path(os.environ.get("FLEXADR_ARTIFACTS") or tmp_path) / "console"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def shot(page, folder: Path, name: str, width: int = 1280) -> None:
    await page.set_viewport_size({"width": width, "height": 900})
    await page.wait_for_timeout(300)          # the charts follow the resize
    await page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def update_docs(folder: Path) -> None:
    """FLEXADR_UPDATE_SCREENSHOTS=docs/console: refresh the committed screenshots."""
    docs = os.environ.get("FLEXADR_UPDATE_SCREENSHOTS")
    for png in folder.glob("*.png") if docs else ():
        shutil.copy(png, Path(docs) / png.name)


def seed_past_event(store, year: int) -> str:
    """A July event of this season with the fleet's telemetry: something to settle."""
    program = model.load("connected_solutions")
    start = datetime(year, 7, 15, 21, 0, tzinfo=timezone.utc)
    clock = ManualClock(start - timedelta(days=2))
    event = lifecycle.publish(store, program, start, start + timedelta(hours=3), list(VENS),
                              clock, setpoint_kw=5.0)
    for ven_id in VENS:
        for quarter in range(-8, 12):
            begin = start + timedelta(minutes=15 * quarter)
            store.record_telemetry(ven_id, begin, begin + timedelta(minutes=15),
                                   kw=-4.0 if quarter >= 0 else 0.5)
    assert store.set_event_status(event.event_id, event.status, "completed",
                                  start + timedelta(hours=3))
    return event.event_id


async def login(browser, base: str, username: str):
    context = await browser.new_context(base_url=base, timezone_id="UTC", accept_downloads=True)
    page = await context.new_page()
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.goto("/ui/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator("header .who span")).to_contain_text(username)
    return context, page


def local_input(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


async def test_operator_runs_an_event_from_the_console(tmp_path):
    folder = artifacts(tmp_path)
    admin_port = _free_port()
    base = f"http://127.0.0.1:{admin_port}"
    async with running_site(tmp_path, TIME_SCALE, VENS, admin_port=admin_port) as site:
        store, clock = site.store, site.vtn.clock
        # The program's own 15-minute reporting interval would win over the compressed one.
        ensure_program(store, "connected_solutions")
        store.upsert_program(store.program("connected_solutions").model_copy(
            update={"telemetry_interval_s": int(site.report_wall.total_seconds())}))
        season = clock.now().year
        seed_past_event(store, season)
        for role in ("operator", "viewer"):
            auth.add_user(store, role, PASSWORD, role, actor="test", clock=clock)
        viewer_token = auth.issue_token(store, "viewer", "test", actor="test", clock=clock)
        for name in VENS:
            await site.add_agent(site.agent_config(name))
        # A first registration that fails (a busy CI machine) is retried.
        await eventually(lambda: all(agent.registered for agent in site.agents),
                         REGISTER_RETRY.total_seconds() + 15, "every VEN registered")

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                       args=["--no-sandbox"])
            context, page = await login(browser, base, "operator")

            # An event now, one minute long, breaks the program's 24 h notice and its 2-3 h
            # durations whatever the date and hour (season and window depend on when the test
            # runs), so it is refused with those rules; with an override and a reason it is
            # published.
            await page.goto("/ui/events")
            form = page.locator("#create-event")
            await form.locator("select[name=program_id]").select_option("connected_solutions")
            start = clock.now() + timedelta(seconds=12)
            await form.locator("input[name=start]").fill(local_input(start))
            await form.locator("input[name=minutes]").fill("1")
            await form.locator("input[name=setpoint_kw]").fill("3")
            await form.locator("button[type=submit]").click()
            error = form.locator("[data-error]")
            await expect(error).to_contain_text("422: ")
            await expect(error).to_contain_text("notice: ")            # the rules, by name
            await expect(error).to_contain_text("durations: ")
            assert [e.status for e in store.events()] == ["completed"]     # nothing stored
            await shot(page, folder, "events-refused")
            await form.locator("input[name=override_reason]").fill("cold-snap drill")
            await form.locator("button[type=submit]").click()
            await page.wait_for_url("**/ui/events/*")
            event_id = page.url.rsplit("/", 1)[1]
            assert "cold-snap drill" in store.event(event_id).forced_reason
            await expect(page.locator("#overrides")).to_contain_text("notice")

            # Now: the event goes live and the fleet's delivered kW moves with each report.
            await page.goto("/ui/now")
            card = page.locator(f'[data-event="{event_id}"]')
            await expect(card.locator('[data-field="status"]')).to_have_text(
                "active", timeout=WAIT_MS)
            delivered = card.locator('[data-field="delivered_kw"]')
            await expect(delivered).not_to_have_text("—", timeout=WAIT_MS)
            points = int(await card.get_attribute("data-points"))
            # The next report adds a point to the chart without a reload.
            await expect(card).not_to_have_attribute("data-points", str(points), timeout=WAIT_MS)
            assert int(await card.get_attribute("data-points")) > points
            assert int(await page.locator("#live").get_attribute("data-updates")) >= 2
            assert await card.locator(".chart canvas").count() == 1        # uPlot drew it
            assert int(await card.locator('[data-count="opted_in"]').text_content()) == 3
            await shot(page, folder, "now")
            await shot(page, folder, "now-phone", width=390)

            # Cancel it; every VEN hears of the cancellation on its next poll.
            await page.goto(f"/ui/events/{event_id}")
            await shot(page, folder, "event")
            await page.locator("#cancel-event button").click()
            await expect(page.locator('[data-field="status"]')).to_have_text("cancelled")
            for _ in range(WAIT_MS // 250):
                if all(a.decisions.get(event_id) and a.decisions[event_id].reason == "cancelled"
                       for a in site.agents):
                    break
                await asyncio.sleep(0.25)
            assert {a.decisions[event_id].reason for a in site.agents} == {"cancelled"}

            # Season results: per-event figures and the CSV download.
            await page.goto(f"/ui/results?program=connected_solutions&season={season}")
            async with page.expect_download() as download_info:
                await page.click("#season-csv")
            download = await download_info.value
            csv_text = Path(await download.path()).read_text()
            assert csv_text.startswith("participant,season_kw,payment_usd")
            assert sorted(line.split(",")[0] for line in csv_text.splitlines()[1:]) == list(VENS)
            await shot(page, folder, "results")
            await page.goto("/ui/programs")
            await shot(page, folder, "programs")
            # VENs: disable one with a reason (through the admin API, audited).
            await page.goto("/ui/vens")
            await shot(page, folder, "vens")
            row = page.locator('tr[data-ven="ven-c"]')
            await row.locator("input[name=reason]").fill("meter swap")
            await row.locator("button", has_text="Disable").click()
            await expect(page.locator('tr[data-ven="ven-c"]')).to_contain_text(
                "disabled (meter swap)")
            assert store.ven("ven-c").disabled_at is not None
            # The override is in the audit log: who, which rules, and the reason.
            await page.goto("/ui/audit")
            await page.fill("input[name=action]", "event.override")
            row = page.locator("#audit-rows tr", has_text="cold-snap drill")
            await expect(row).to_have_count(1)
            await expect(row).to_contain_text("operator")
            await expect(row).to_contain_text(event_id)
            await page.fill("input[name=action]", "")
            await expect(page.locator("#audit-rows tr", has_text="event.cancel")).to_have_count(1)
            await expect(page.locator("#audit-rows tr", has_text="ven.disable")).to_contain_text(
                "operator")
            await shot(page, folder, "audit")
            await context.close()

            # A viewer sees no dispatch control, and the API refuses the viewer's token.
            context, page = await login(browser, base, "viewer")
            for path in ("/ui/events", f"/ui/events/{event_id}", "/ui/vens"):
                await page.goto(path)
                assert await page.locator("form[data-api]").count() == 0, path
            await shot(page, folder, "vens-viewer")
            await context.close()
            await browser.close()
        async with aiohttp.ClientSession() as client:
            async with client.post(f"{base}/api/events", json={},
                                   headers={"Authorization": f"Bearer {viewer_token}"}) as answer:
                assert answer.status == 403
    update_docs(folder)


async def test_tomorrow_page_shows_the_planners_forecast(tmp_path, store):
    """The planner's view of 2018-08-28 from the ISO-NE data: its reason and forecast plot."""
    from certs.pki import ensure_dev_pki
    from vtn.planning import PlannerSettings
    from vtn.service import Vtn, VtnConfig
    from tests.test_vtn_planning import SOURCES
    folder = artifacts(tmp_path)
    pki = ensure_dev_pki(tmp_path / "pki", [])
    admin_port = _free_port()
    clock = ManualClock(datetime(2018, 8, 27, 16, 0, tzinfo=timezone.utc))
    vtn = Vtn(VtnConfig("TEST_VTN", "127.0.0.1", _free_port(), pki.vtn.cert, pki.vtn.key,
                        pki.ca.cert, admin_port=admin_port), store, clock)
    vtn.planner_settings = PlannerSettings(programs=("connected_solutions",), sources=SOURCES)
    auth.add_user(store, "viewer", PASSWORD, "viewer", actor="test", clock=clock)
    await vtn.start(run_ticker=False)
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                       args=["--no-sandbox"])
            context, page = await login(browser, f"http://127.0.0.1:{admin_port}", "viewer")
            await page.goto("/ui/tomorrow")
            section = page.locator('[data-program="connected_solutions"]')
            await expect(section.locator(".decision")).to_contain_text(":")
            assert await section.locator(".forecast-chart canvas").count() == 1
            await shot(page, folder, "tomorrow")
            await browser.close()
    finally:
        await vtn.stop()
    update_docs(folder)
