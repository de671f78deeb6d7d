"""The VTN signs with a signer that parsed its key once, pinned on its own services
(openleadr keeps the signer on the VTNService class), and checks replays in O(1)."""
import pytest
from openleadr import messaging
from openleadr.service import VTNService

from flexadr.signing import MessageSigner, NonceCache
from tests.harness import Site


@pytest.fixture
async def site(tmp_path):
    site = Site(tmp_path, time_scale=900.0)
    await site.start(["ven-a"])
    yield site
    await site.stop()


async def test_vtn_signs_with_its_own_cached_signer_and_a_signed_ven_registers(site):
    services = site.vtn.server.services.values()
    assert all(isinstance(s._create_message, MessageSigner) for s in services)
    assert not isinstance(VTNService._create_message, MessageSigner)   # nothing class-wide
    assert isinstance(messaging.NONCE_CACHE, NonceCache)
    before = set(messaging.NONCE_CACHE)

    agent = await site.add_agent(site.agent_config("ven-a"))

    assert agent.registered                 # the VEN verified every VTN answer (vtn_fingerprint set)
    # the VEN's nonces went through the O(1) cache (a count could stay level while
    # earlier tests' nonces expire from the window)
    assert set(messaging.NONCE_CACHE) - before
    assert site.store.ven("ven-a").registration_id == agent.client.registration_id
