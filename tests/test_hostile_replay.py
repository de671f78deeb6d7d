"""Replay protection shared by every VTN process on one database (issue 11 item 3, issue 12
item 6): a window around now, past and future, and nonces kept in the store.

The second VTN of a test has its own Store (its own engine and connections) on the same
database URL and its own Vtn instance: nothing is shared with the first but the database,
as with a second `vtn serve` process.
"""
from datetime import datetime, timedelta, timezone

from openleadr import enums
from sqlalchemy import func, select

from certs.pki import ensure_dev_pki
from tests.hostile_peer import VEN, Peer, code, enrol, pki_for, running_vtn, signed_at
from vtn.store import Store
from vtn.store.models import NonceRecord

REFUSED = enums.STATUS_CODES.NOT_REGISTERED_OR_AUTHORIZED


async def test_a_message_replayed_to_a_second_vtn_on_the_same_database_is_refused(
        tmp_path, database_url):
    first_store, second_store = Store(database_url), Store(database_url)
    pki = pki_for(tmp_path)
    enrol(first_store, pki)
    try:
        async with running_vtn(first_store, pki) as first, running_vtn(second_store, pki) as second, \
                Peer(pki) as peer:
            captured = peer.sign("oadrPoll", ven_id=VEN)
            assert code((await peer.post(first, "OadrPoll", captured))[1]) == 200
            status, body = await peer.post(second, "OadrPoll", captured)
            assert (status, code(body)) == (200, REFUSED)
            assert "replay" in body
            # the second VTN serves fresh messages
            assert code((await peer.post(second, "OadrPoll", peer.sign("oadrPoll", ven_id=VEN)))[1]) == 200
    finally:
        first_store.close()
        second_store.close()


async def test_a_restart_does_not_reopen_replays(tmp_path, database_url):
    pki = pki_for(tmp_path)
    store = Store(database_url)
    enrol(store, pki)
    async with Peer(pki) as peer:
        captured = peer.sign("oadrPoll", ven_id=VEN)
        async with running_vtn(store, pki) as url:
            assert code((await peer.post(url, "OadrPoll", captured))[1]) == 200
        store.close()
        store = Store(database_url)            # a new process: nothing in memory
        async with running_vtn(store, pki) as url:
            assert code((await peer.post(url, "OadrPoll", captured))[1]) == REFUSED
    store.close()


async def test_the_window_refuses_the_future_and_the_stale_and_admits_a_slow_clock(tmp_path, store):
    pki = pki_for(tmp_path)
    enrol(store, pki)
    async with running_vtn(store, pki) as url, Peer(pki) as peer:
        async def poll_signed(offset: timedelta) -> str:
            with signed_at(offset):
                message = peer.sign("oadrPoll", ven_id=VEN)
            return (await peer.post(url, "OadrPoll", message))[1]

        future = await poll_signed(timedelta(seconds=60))
        assert code(future) == REFUSED
        assert "+60" in future or "+59" in future      # the measured skew is reported
        assert code(await poll_signed(timedelta(seconds=-6))) == 200    # a VEN 6 s behind
        assert code(await poll_signed(timedelta(seconds=-45))) == REFUSED


async def test_the_window_is_configurable(tmp_path, store):
    pki = pki_for(tmp_path)
    enrol(store, pki)
    async with running_vtn(store, pki, replay_past=timedelta(minutes=5),
                           replay_future=timedelta(seconds=90)) as url, Peer(pki) as peer:
        for offset in (timedelta(seconds=60), timedelta(minutes=-4)):
            with signed_at(offset):
                message = peer.sign("oadrPoll", ven_id=VEN)
            assert code((await peer.post(url, "OadrPoll", message))[1]) == 200


def test_expired_nonces_are_pruned_in_bulk_and_live_ones_kept(store):
    now = datetime.now(timezone.utc)
    assert store.use_nonce("old", now - timedelta(seconds=1))
    assert store.use_nonce("live", now + timedelta(seconds=30))
    assert not store.use_nonce("live", now + timedelta(seconds=30))
    assert store.prune_nonces(now) == 1
    assert store.use_nonce("old", now + timedelta(seconds=30))     # gone, so insertable again
    assert not store.use_nonce("live", now + timedelta(seconds=30))


def test_the_window_comes_from_the_config_file(tmp_path):
    from vtn import config as vtn_config
    pki = ensure_dev_pki(tmp_path / "pki", [])
    files = f'cert = "{pki.vtn.cert}"\nkey = "{pki.vtn.key}"\nca_file = "{pki.ca.cert}"\n'
    path = tmp_path / "vtn.toml"
    path.write_text(files + "replay_past_s = 120\nreplay_future_s = 2\n")
    server = vtn_config.load(path).server
    assert (server.replay_past, server.replay_future) == (timedelta(seconds=120), timedelta(seconds=2))
    path.write_text(files)
    server = vtn_config.load(path).server
    assert (server.replay_past, server.replay_future) == (timedelta(seconds=30), timedelta(seconds=5))


async def test_an_acknowledgement_keeps_its_nonce_and_a_refused_message_stores_none(
        tmp_path, store):
    """The nonce is written in the request's transaction: kept with an oadrResponse (which
    gets an empty answer), rolled back with a refused message, which then stays refusable
    for what it is rather than as a replay."""
    pki = pki_for(tmp_path)
    enrol(store, pki)
    async with running_vtn(store, pki) as url, Peer(pki) as peer:
        acknowledgement = peer.sign("oadrResponse", ven_id=VEN, response={
            "response_code": 200, "response_description": "OK", "request_id": "r-1"})
        assert await peer.post(url, "EiEvent", acknowledgement) == (200, "")
        status, body = await peer.post(url, "EiEvent", acknowledgement)
        assert (status, code(body)) == (200, REFUSED) and "replay" in body
        with store.engine.connect() as connection:
            before = connection.execute(select(func.count()).select_from(NonceRecord)).scalar()
        unknown_event = peer.sign("oadrCreatedEvent", ven_id=VEN, response={
            "response_code": 200, "response_description": "OK", "request_id": "r-2"},
            event_responses=[{"response_code": 200, "response_description": "OK",
                              "request_id": "r-2", "event_id": "no-such-event",
                              "modification_number": 0, "opt_type": "optIn"}])
        for _ in range(2):
            status, body = await peer.post(url, "EiEvent", unknown_event)
            assert (status, code(body)) == (200, enums.STATUS_CODES.INVALID_ID)
        with store.engine.connect() as connection:
            assert connection.execute(select(func.count()).select_from(NonceRecord)).scalar() \
                == before
