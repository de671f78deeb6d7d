"""The recipe for the VTN (docs/benchmarks.md): replace openleadr's per-message key
parsing on VTNService with a MessageSigner and its nonce set with a NonceCache. A VEN
still registers, and checks the VTN's signatures; the VTN checks the VEN's replays."""
import pytest
from openleadr import messaging
from openleadr.service import VTNService

from flexadr.signing import MessageSigner, install_nonce_cache
from tests.harness import Site


class CountingSigner(MessageSigner):
    calls = 0

    def __call__(self, message_type, **payload):
        CountingSigner.calls += 1
        return super().__call__(message_type, **payload)


@pytest.fixture
async def site(tmp_path):
    site = Site(tmp_path, time_scale=900.0)
    await site.start(["ven-a"])
    yield site
    await site.stop()


async def test_vtn_with_cached_signer_and_nonce_cache_serves_a_signed_ven(site, monkeypatch):
    monkeypatch.setattr(VTNService, "_create_message",
                        CountingSigner.from_files(site.pki.vtn.cert, site.pki.vtn.key))
    monkeypatch.setattr(messaging, "NONCE_CACHE", messaging.NONCE_CACHE)
    monkeypatch.setattr(messaging, "_update_nonce_cache", messaging._update_nonce_cache)
    cache = install_nonce_cache()
    CountingSigner.calls = 0

    agent = await site.add_agent(site.agent_config("ven-a"))

    assert agent.registered                 # the VEN verified every VTN answer (vtn_fingerprint set)
    assert CountingSigner.calls >= 4        # registration, reports, events, poll were signed by it
    assert len(cache) >= 4                  # and the VEN's nonces went through the O(1) cache
    assert site.store.ven("ven-a").registration_id == agent.client.registration_id
