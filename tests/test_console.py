"""The console over plain HTTP (no browser): login, cookie flags, CSRF, roles, pages, SSE."""
import json
import re
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest

from certs.pki import ensure_dev_pki
from flexadr.clock import ManualClock
from flexadr.demo import _free_port
from vtn import auth
from vtn.console.app import COOKIE
from vtn.programs import ensure_program
from vtn.service import Vtn, VtnConfig
from vtn.store import Ven

NOW = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)
PASSWORD = "correct horse battery"
TIMEOUT = aiohttp.ClientTimeout(total=10)
PAGES = ["/ui/now", "/ui/events", "/ui/vens", "/ui/programs", "/ui/results", "/ui/audit"]


@pytest.fixture
async def console(tmp_path, store):
    pki = ensure_dev_pki(tmp_path / "pki", ["ev-1"])
    admin_port = _free_port()
    clock = ManualClock(NOW)
    vtn = Vtn(VtnConfig("TEST_VTN", "127.0.0.1", _free_port(), pki.vtn.cert, pki.vtn.key,
                        pki.ca.cert, admin_port=admin_port), store, clock)
    for role in ("viewer", "operator"):
        auth.add_user(store, role, PASSWORD, role, actor="test", clock=clock)
    ensure_program(store, "connected_solutions")
    store.enrol(Ven(ven_id="ev-1", ven_name="ev-1", fingerprint=pki.vens["ev-1"].fingerprint,
                    program_id="connected_solutions", device_kind="battery"))
    await vtn.start(run_ticker=False)
    yield f"http://127.0.0.1:{admin_port}", vtn, clock
    await vtn.stop()


async def _login(base, username, password=PASSWORD):
    session = aiohttp.ClientSession(base_url=base, timeout=TIMEOUT,
                                    cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.get("/ui/login") as page:
        csrf = re.search(r'name="csrf" value="([^"]+)"', await page.text()).group(1)
    async with session.post("/ui/login", data={"csrf": csrf, "username": username,
                                               "password": password},
                            allow_redirects=False) as answer:
        status, cookie = answer.status, answer.headers.getall("Set-Cookie", [])
    return session, status, cookie


async def _csrf(session, path="/ui/events"):
    async with session.get(path) as page:
        return re.search(r'data-csrf="([^"]+)"', await page.text()).group(1)


async def test_login_sets_a_strict_httponly_cookie_and_pages_need_it(console):
    base, vtn, clock = console
    async with aiohttp.ClientSession(base_url=base, timeout=TIMEOUT) as anonymous:
        for path in PAGES:
            async with anonymous.get(path, allow_redirects=False) as response:
                assert response.status == 303 and response.headers["Location"] == "/ui/login"
    session, status, cookies = await _login(base, "operator", "wrong password!")
    await session.close()
    assert status == 401 and not any(c.startswith(COOKIE) for c in cookies)
    session, status, cookies = await _login(base, "operator")
    async with session:
        assert status == 303
        cookie = next(c for c in cookies if c.startswith(COOKIE + "="))
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        for path in PAGES:
            async with session.get(path) as response:
                text = await response.text()
                assert response.status == 200, (path, text[:300])
                assert "script-src 'self'" in response.headers["Content-Security-Policy"]
                assert "operator (operator)" in text
        csrf = await _csrf(session)
        async with session.post("/ui/logout", data={"csrf": csrf},
                                allow_redirects=False) as response:
            assert response.status == 303
        async with session.get("/ui/now", allow_redirects=False) as response:
            assert response.status == 303


async def test_login_form_without_its_token_is_refused(console):
    base, _, _ = console
    async with aiohttp.ClientSession(base_url=base, timeout=TIMEOUT) as session:
        async with session.post("/ui/login", data={"username": "operator",
                                                   "password": PASSWORD},
                                allow_redirects=False) as response:
            assert response.status == 403 and COOKIE not in response.cookies


async def test_the_session_acts_on_the_api_only_with_its_csrf_token_and_role(console, store):
    base, vtn, clock = console
    body = {"program_id": "connected_solutions", "start": "2026-07-03T21:00:00Z",
            "minutes": 120, "setpoint_kw": 3.0}
    session, _, _ = await _login(base, "operator")
    async with session:
        async with session.post("/api/events", json=body) as response:
            assert response.status == 401          # the cookie alone cannot change anything
        assert store.events() == []
        csrf = await _csrf(session)
        async with session.post("/api/events", json=body,
                                headers={"X-CSRF-Token": "forged"}) as response:
            assert response.status == 401
        async with session.post("/api/events", json=body,
                                headers={"X-CSRF-Token": csrf}) as response:
            created = await response.json()
            assert response.status == 201, created
        async with session.get(f"/ui/events/{created['event_id']}") as response:
            page = await response.text()
            assert response.status == 200 and 'id="cancel-event"' in page
    viewer, _, _ = await _login(base, "viewer")
    async with viewer:
        csrf = await _csrf(viewer)
        async with viewer.get(f"/ui/events/{created['event_id']}") as response:
            page = await response.text()
        assert 'id="cancel-event"' not in page and 'data-api=' not in page
        async with viewer.get("/ui/events") as response:
            assert 'id="create-event"' not in await response.text()
        async with viewer.post(f"/api/events/{created['event_id']}/cancel",
                               headers={"X-CSRF-Token": csrf}) as response:
            assert response.status == 403
    assert store.event(created["event_id"]).status != "cancelled"


async def test_now_stream_sends_the_fleet_when_telemetry_arrives(console, store):
    base, vtn, clock = console
    session, _, _ = await _login(base, "viewer")
    start = NOW + timedelta(minutes=5)
    from vtn import lifecycle
    from schedules import model
    event = lifecycle.publish(store, model.load("connected_solutions"), start,
                              start + timedelta(hours=1), ["ev-1"], clock, setpoint_kw=3.0)
    async with session, session.get("/ui/now/stream") as stream:
        first = json.loads((await stream.content.readline()).decode().removeprefix("data: "))
        assert [e["event_id"] for e in first] == [event.event_id]
        assert first[0]["target_kw"] == 3.0 and first[0]["series"] == []
        await stream.content.readline()                     # the blank line ending the event
        store.record_telemetry("ev-1", start - timedelta(minutes=15), start, kw=-2.5)
        second = json.loads((await stream.content.readline()).decode().removeprefix("data: "))
        assert second[0]["series"] == [[(start - timedelta(minutes=15)).timestamp(), 2.5]]
        assert second[0]["baseline_kw"] == 2.5


async def test_tomorrow_lists_pending_events_and_the_planners_reasons(console, store):
    from schedules import model
    from vtn import lifecycle
    from vtn.planning import PlannerSettings
    from tests.test_vtn_planning import SOURCES
    base, vtn, clock = console
    program = model.load("connected_solutions")
    start = NOW + timedelta(days=2, hours=9)
    pending = lifecycle.publish(store, program, start, start + timedelta(hours=3), ["ev-1"],
                                clock, setpoint_kw=3.0, planned=True)
    session, _, _ = await _login(base, "operator")
    async with session:
        async with session.get("/ui/tomorrow") as response:
            page = await response.text()
        assert response.status == 200 and f'data-event-id="{pending.event_id}"' in page
        assert "No <code>[planner]</code>" in page
        async with session.post(f"/api/events/{pending.event_id}/publish",
                                headers={"X-CSRF-Token": await _csrf(session)}) as response:
            assert response.status == 200, await response.text()      # approved
        assert store.event(pending.event_id).status != "pending"
        # With the planner's data, the page shows what it would decide and why.
        vtn.planner_settings = PlannerSettings(programs=("connected_solutions",),
                                               sources=SOURCES)
        clock.set(datetime(2018, 8, 27, 16, 0, tzinfo=timezone.utc))   # ISO issued at 14:00
        async with session.get("/ui/tomorrow") as response:
            page = await response.text()
        assert response.status == 200, page[:500]
        assert "2018-08-28" in page and "forecast peak" in page.lower()
        assert 'class="forecast-chart"' in page
        assert re.search(r"<strong>(Call an event|No event)</strong>: \S", page)


async def test_programs_page_shows_the_exclusions_in_force(console, store, tmp_path):
    from vtn.planning import PlannerSettings
    from tests.test_vtn_planning import _declare
    base, vtn, clock = console
    start = NOW + timedelta(days=1)
    found = _declare(tmp_path, "Type 1", start, start + timedelta(hours=6), NOW)
    session, _, _ = await _login(base, "viewer")
    async with session:
        async with session.get("/ui/programs") as response:
            assert "No alert feeds" in await response.text()
        vtn.planner_settings = PlannerSettings(programs=("connected_solutions",),
                                               sources=found)
        async with session.get("/ui/programs") as response:
            page = await response.text()
    assert response.status == 200
    assert re.search(r"2026-07-02 12:00:00 UTC → 2026-07-02 18:00:00 UTC: [^<]*Type 1", page)
