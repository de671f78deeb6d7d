"""Dual stack end to end: one event with two intervals, written as an OpenADR 3.1 body and
mapped by the 3.1 edge (an operator creates it: the dispatch rules refuse a seconds-long
event to a 3.1 business-logic client, see tests/test_ven_openadr31.py), reaches our 2.0b agent (mutual TLS, signed XML, through a proxy) and our
3.1 agent (REST, token); both sim batteries follow each interval; both telemetry streams
land in the one store, and `vtn settle` settles the two participants together.

Time is compressed: the program's 15 minutes are one wall-clock second.
"""
import argparse
import json

import pytest

from flexadr.clock import SystemClock
from tests.harness import eventually, running_site
from tests.test_openadr31_api import enrol, start_api
from tests.test_openadr31_notify import clients, start_edge
from tests.test_ven_openadr31 import (HALF_HOUR, REPORT, SCALE, agent_config, post_event,
                                      profile_event, sleep_until)
from ven import config as ven_config
from ven.agent import VenAgent
from ven.fleet import Fleet
from vtn.commands import settle as settle_cmd

PROFILE = [5.0, 3.0]          # kW delivered in each half hour


def _settle(database_url: str, capsys) -> dict:
    parser = argparse.ArgumentParser()
    settle_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["settle", "--program", "connected_solutions", "--season",
                              str(SystemClock().now().year), "--database", database_url])
    capsys.readouterr()              # openleadr's start-up banner, not ours
    assert args.func(args) == 0
    return json.loads(capsys.readouterr().out)


async def test_one_31_event_reaches_a_20b_and_a_31_agent_and_settles_both(tmp_path, capsys):
    async with running_site(tmp_path, SCALE, ("ven-20b",)) as site:
        # Registered before the 3.1 edge copies the program files into the store, so the
        # 2.0b VTN asks for telemetry at the site's compressed 15 minutes.
        legacy = await site.add_agent(site.agent_config("ven-20b"))
        assert legacy.registered
        enrol(site.store, "ven-31")
        server, api = await start_edge(site.store, clients(site.store, ("ven-31",)))
        modern = VenAgent(agent_config(tmp_path, api.url, api.secrets["ven-31-client"]),
                          SystemClock(), database=site.database)
        site.agents.append(modern)
        try:
            await modern.start()
            start, body = profile_event(PROFILE, targets=("ven-20b", "ven-31"))
            event = await post_event(api, site.store, body)
            event_id = event["id"]
            for agent in (legacy, modern):
                await eventually(lambda a=agent: event_id in a.decisions, 10,
                            f"{agent.config.ven_name} got the event")
                assert agent.decisions[event_id].opt.value == "optIn"
            await eventually(lambda: site.store.target(event_id, "ven-20b").opt_type == "optIn", 10,
                        "the 2.0b agent's optIn")
            end = start + len(PROFILE) * HALF_HOUR
            await sleep_until(end + 2 * REPORT)
            for agent in (legacy, modern):
                await eventually(lambda a=agent: a.store.backlog() == 0, 15,
                            f"{agent.config.ven_name}'s outbox sent")

            for agent in (legacy, modern):
                name = agent.config.ven_name
                device = agent.adapter.device
                for n, kw in enumerate(PROFILE):          # device truth, interval by interval
                    begin = start + n * HALF_HOUR
                    assert -device.mean_kw(begin, begin + HALF_HOUR) == pytest.approx(
                        kw, rel=0.02), (name, n)
                points = site.store.telemetry(name)
                starts = [p.interval_start for p in points]
                assert len(starts) == len(set(starts)), f"{name}: an interval arrived twice"
                during = [p.kw for p in points if start <= p.interval_start < end]
                assert during == pytest.approx([-5.0, -5.0, -3.0, -3.0], rel=0.03), name
        finally:
            await api.session.close()
            await server.stop()

        settled = _settle(f"sqlite:///{tmp_path / 'vtn.sqlite'}", capsys)
        by_name = {p["participant"]: p for p in settled["participants"]}
        assert set(by_name) == {"ven-20b", "ven-31"}
        for name in by_name:
            (performance,) = [e for e in by_name[name]["events"] if e["event_id"] == event_id]
            assert performance["kw"] == pytest.approx(sum(PROFILE) / len(PROFILE), rel=0.03)


async def test_a_fleet_mixes_both_protocols(tmp_path):
    async with running_site(tmp_path, SCALE, ("ven-20b",)) as site:
        enrol(site.store, "ven-31")
        server, api = await start_api(site.store, ("ven-31",))
        (tmp_path / "ven-31.secret").write_text(api.secrets["ven-31-client"])
        pki = site.pki
        fleet_toml = tmp_path / "fleet.toml"
        fleet_toml.write_text(f"""
[defaults]
vtn_url = "https://127.0.0.1:{site.proxy.port}/OpenADR2/Simple/2.0b"
ca_file = "{pki.ca.cert}"
capacity_kwh = 13.5
time_scale = {SCALE}
state_url = "sqlite:///fleet.sqlite"
adapter = {{ name = "sim", config = {{ kind = "battery", capacity_kwh = 13.5, soc_pct = 80, max_charge_kw = 5.0, max_discharge_kw = 5.0 }} }}

[groups.oadr31]
protocol = "3.1"
vtn_url = "{api.url}"
oadr31 = {{ client_secret_file = "ven-31.secret", reread_s = 1 }}

[[ven]]
ven_name = "ven-20b"
cert = "{pki.vens['ven-20b'].cert}"
key = "{pki.vens['ven-20b'].key}"

[[ven]]
ven_name = "ven-31"
group = "oadr31"
oadr31 = {{ client_id = "ven-31-client" }}
""")
        configs = ven_config.load_fleet(fleet_toml)
        assert [(c.ven_name, c.protocol) for c in configs] == [("ven-20b", "2.0b"),
                                                                ("ven-31", "3.1")]
        fleet = None
        try:
            fleet = Fleet(configs, SystemClock())
            await fleet.start()
            await eventually(lambda: all(a.registered for a in fleet.agents), 15, "both registered")
            assert {a.ven_id for a in fleet.agents} == {"ven-20b", "ven-31"}
            assert site.store.ven("ven-20b").registration_id is not None
        finally:
            if fleet is not None:
                await fleet.stop()
            await api.session.close()
            await server.stop()
        fleet_toml.write_text(fleet_toml.read_text().replace('group = "oadr31"', 'group = "3.1"'))
        with pytest.raises(ven_config.ConfigError, match=r"ven\[1\].group: no group '3.1'"):
            ven_config.load_fleet(fleet_toml)
