"""Dual stack end to end: one event with two intervals, created by a business-logic client
over OpenADR 3.1, reaches our 2.0b agent (mutual TLS, signed XML, through a proxy) and our
3.1 agent (REST, token); both sim batteries follow each interval; both telemetry streams
land in the one store, and `vtn settle` settles the two participants together.

Time is compressed: the program's 15 minutes are one wall-clock second.
"""
import argparse
import json

import pytest

from flexadr.clock import SystemClock
from tests.harness import running_site
from tests.test_openadr31_api import enrol, start_api
from tests.test_ven_openadr31 import (HALF_HOUR, REPORT, SCALE, agent_config, profile_event,
                                      sleep_until, until)
from ven.agent import VenAgent
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
        server, api = await start_api(site.store, ("ven-31",))
        modern = VenAgent(agent_config(tmp_path, api.url, api.secrets["ven-31-client"]),
                          SystemClock(), database=site.database)
        site.agents.append(modern)
        try:
            await modern.start()
            start, body = profile_event(PROFILE, targets=("ven-20b", "ven-31"))
            _, event = await api.call("POST", "/events", client="bl", expect=201, json=body)
            event_id = event["id"]
            for agent in (legacy, modern):
                await until(lambda a=agent: event_id in a.decisions, 10,
                            f"{agent.config.ven_name} got the event")
                assert agent.decisions[event_id].opt.value == "optIn"
            await until(lambda: site.store.target(event_id, "ven-20b").opt_type == "optIn", 10,
                        "the 2.0b agent's optIn")
            end = start + len(PROFILE) * HALF_HOUR
            await sleep_until(end + 2 * REPORT)
            for agent in (legacy, modern):
                await until(lambda a=agent: a.store.backlog() == 0, 15,
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
