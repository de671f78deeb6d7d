"""The poll frequency given at registration is held to: a burst, then twice the rate."""
import asyncio
from datetime import datetime, timedelta, timezone

from flexadr.clock import SystemClock
from tests.hostile_peer import VEN, Peer, answer, code, enrol, pki_for, running_vtn
from vtn import audit, metrics, ven_control
from vtn.poll_rate import PollRate

T0 = datetime(2026, 7, 1, 12, tzinfo=timezone.utc)
COMPLIANCE_ERROR = 459


def test_a_burst_then_twice_the_requested_rate():
    rate = PollRate(timedelta(seconds=10), burst=3)
    assert [rate.allow("ven-a", T0) for _ in range(4)] == [True, True, True, False]
    # One poll comes back every half interval (twice the requested rate) ...
    assert not rate.allow("ven-a", T0 + timedelta(seconds=4))
    assert rate.allow("ven-a", T0 + timedelta(seconds=9))
    # ... and other VENs have buckets of their own.
    assert rate.allow("ven-b", T0)


def test_a_ven_polling_at_the_requested_rate_is_never_refused():
    rate = PollRate(timedelta(seconds=60), burst=1)
    assert all(rate.allow("ven-a", T0 + timedelta(seconds=60 * n)) for n in range(100))


def test_a_quiet_ven_earns_at_most_one_burst():
    rate = PollRate(timedelta(seconds=10), burst=3)
    allowed = [rate.allow("ven-a", T0 + timedelta(days=1)) for _ in range(5)]
    assert allowed == [True, True, True, False, False]


async def test_too_fast_polls_get_459_and_lose_no_message(tmp_path, store):
    pki = pki_for(tmp_path)
    enrol(store, pki)
    refused_before = metrics.POLLS_TOO_FAST._value.get()
    # Polls every 4 s, so at most one every 2 s after the burst: the eleven polls below
    # (a second or less, even on a loaded machine) earn no new one meanwhile.
    async with running_vtn(store, pki, poll_interval=timedelta(seconds=4)) as url, \
            Peer(pki) as peer:
        burst = [code((await peer.post(url, "OadrPoll", peer.sign("oadrPoll", ven_id=VEN)))[1])
                 for _ in range(10)]
        assert burst == [200] * 10
        ven_control.request_reregistration(store, VEN, SystemClock(), audit.ADMIN_TOKEN)
        status, body = await peer.post(url, "OadrPoll", peer.sign("oadrPoll", ven_id=VEN))
        assert status == 200
        kind, payload = answer(body)
        assert (kind, payload["response"]["response_code"]) == ("oadrResponse", COMPLIANCE_ERROR)
        assert "oadrRequestedOadrPollFreq" in payload["response"]["response_description"]
        assert metrics.POLLS_TOO_FAST._value.get() == refused_before + 1
        # The queued message waited: half a poll interval later the VEN gets it.
        await asyncio.sleep(2.1)
        kind, _ = answer((await peer.post(url, "OadrPoll", peer.sign("oadrPoll", ven_id=VEN)))[1])
        assert kind == "oadrRequestReregistration"
