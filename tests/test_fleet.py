"""Fleet mode: many agents in one process, each with its own adapter, certificate and client."""
import gc

import pytest

from adapters.registry import UnknownAdapter
from adapters.sim import SimAdapter
from flexadr.clock import SystemClock
from flexadr.signing import MessageSigner
from tests.harness import Site
from ven.fleet import Fleet

NAMES = ["ven-a", "ven-b", "ven-c"]


@pytest.fixture
async def site(tmp_path):
    site = Site(tmp_path, time_scale=900.0)
    await site.start(NAMES)
    yield site
    await site.stop()


async def test_every_agent_gets_its_own_adapter_and_registers_with_its_own_certificate(site):
    configs = [site.agent_config(name, soc_pct=50.0 + 10 * i) for i, name in enumerate(NAMES)]
    fleet = Fleet(configs, SystemClock(), database=site.database)
    adapters = [agent.adapter for agent in fleet.agents]
    assert all(isinstance(adapter, SimAdapter) for adapter in adapters)
    assert len({id(adapter) for adapter in adapters}) == len(NAMES)       # not shared
    assert [a.device.soc_pct for a in adapters] == [50.0, 60.0, 70.0]    # each its own config
    assert all(isinstance(agent.link.client._create_message, MessageSigner) for agent in fleet.agents)
    gc.unfreeze()
    try:
        await fleet.start()
        assert all(agent.registered for agent in fleet.agents)
        registered = {ven.ven_id: ven.registration_id for ven in site.store.vens()}
        assert all(registered[name] for name in NAMES)
        assert {agent.ven_id for agent in fleet.agents} == set(NAMES)
        assert gc.get_freeze_count() > 0    # the agents are out of the collector's full scans
    finally:
        gc.unfreeze()           # the rest of the test session collects as usual
        await fleet.stop()


def test_an_unknown_adapter_is_refused_when_the_fleet_is_built(site):
    config = site.agent_config("ven-a")
    config = type(config)(**{**config.__dict__, "adapter": "no-such-adapter"})
    with pytest.raises(UnknownAdapter):
        Fleet([config], SystemClock(), database=site.database)
