"""The VTN signs with a signer that parsed its key once, pinned on its own services
(openleadr keeps the signer on the VTNService class), and records every signed
message's nonce in its store (one insert per message, shared by its processes)."""
import pytest
from openleadr.service import VTNService
from sqlmodel import select

from flexadr.signing import MessageSigner
from tests.harness import Site
from vtn.store.models import NonceRecord


@pytest.fixture
async def site(tmp_path):
    site = Site(tmp_path, time_scale=900.0)
    await site.start(["ven-a"])
    yield site
    await site.stop()


def _nonces(store) -> set[str]:
    with store.session() as s:
        return set(s.exec(select(NonceRecord.key)).all())


async def test_vtn_signs_with_its_own_cached_signer_and_a_signed_ven_registers(site):
    services = site.vtn.server.services.values()
    assert all(isinstance(s._create_message, MessageSigner) for s in services)
    assert not isinstance(VTNService._create_message, MessageSigner)   # nothing class-wide
    before = _nonces(site.store)

    agent = await site.add_agent(site.agent_config("ven-a"))

    assert agent.registered                 # the VEN verified every VTN answer (vtn_fingerprint set)
    assert _nonces(site.store) - before     # the VEN's messages went through the shared nonce store
    assert site.store.ven("ven-a").registration_id == agent.link.client.registration_id
