"""A fleet of our VEN agents (ven.fleet.Fleet) in a process of its own, for the scale-out
test and benchmarks: what each agent sent is counted on the VEN side, so the VTN's
store can be checked against it exactly.

    python -m bench.fleet_agents SPEC.json

SPEC: {"url", "pki_root", "names": [...], "vtn_fingerprint", "state" (SQLite file),
optional "kind" (one device kind for all; default: bench.fleet's mix in turn),
"start_concurrency" (registrations in flight, default 50), "register_s", "drain_s",
"resume_poll_s" (the VENs were registered through the VTN's store before: each agent
takes up that registration, venID = its name, registrationID "reg-" + name, and polls
every resume_poll_s seconds from a moment drawn uniformly within the first interval, as
a fleet that registered over time would; nothing is sent to register, and no report is
registered: for a fan-out of 10,000 VENs, whose registration alone would take longer
than the bench).
Prints one JSON line {"registered": n, "cpu_s": ...} once every agent has registered
(or "register_s" of the spec, default REGISTER_S, has passed); on
the line "drain" on stdin it stops recording, waits until every outbox is sent
(at most drain_s, default DRAIN_S), stops the agents and prints one JSON line: per VEN the
oadrCreatedEvent messages sent and answered, and the telemetry intervals recorded.
"""
from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

from bench.fleet import KINDS, GcPauses, cpu_s, quiet_logs, raise_fd_limit, rss_mib

DRAIN_S = 90.0
REGISTER_S = 240.0     # for every agent to register, first tries and retries
START_CONCURRENCY = 50


class Tally:
    """What the agents sent, counted by wrapping the client and store classes once."""

    def __init__(self) -> None:
        self.created_event_sent: Counter[str] = Counter()
        self.created_event_answered: Counter[str] = Counter()
        self.created_at: dict[str, float] = {}      # first answered oadrCreatedEvent, wall
        self.intervals: dict[str, set[str]] = {}

    def install(self) -> None:
        import time

        from ven.openadr20b.client import FlexClient
        from ven.store import LocalStore
        original_request, original_add = FlexClient._perform_request, LocalStore.add_interval
        tally = self

        async def counted(client, service, message):
            created = service == "EiEvent" and "oadrCreatedEvent" in message
            if created:
                tally.created_event_sent[client.ven_name] += 1
            answer = await original_request(client, service, message)
            if created and answer and answer[0] is not None:
                tally.created_event_answered[client.ven_name] += 1
                tally.created_at.setdefault(client.ven_name, time.time())
            return answer

        def recorded(store, interval):
            tally.intervals.setdefault(store.ven_name, set()).add(interval.interval_start.isoformat())
            return original_add(store, interval)

        FlexClient._perform_request = counted
        LocalStore.add_interval = recorded

    def result(self) -> dict:
        return {"created_event_sent": dict(self.created_event_sent),
                "created_event_answered": dict(self.created_event_answered),
                "created_at": self.created_at,
                "intervals": {ven: sorted(starts) for ven, starts in self.intervals.items()}}


def agent_configs(spec: dict) -> list:
    from ven.agent import AgentConfig
    from ven.policy import OwnerPrefs
    root = Path(spec["pki_root"])
    kinds = list(KINDS)
    configs = []
    for index, name in enumerate(spec["names"]):
        kind = spec.get("kind") or kinds[index % len(kinds)]
        device = dict(KINDS[kind], kind=kind)
        configs.append(AgentConfig(
            ven_name=name, vtn_url=spec["url"], cert=root / "vens" / f"{name}.crt",
            key=root / "vens" / f"{name}.key", ca_file=root / "ca.crt",
            vtn_fingerprint=spec["vtn_fingerprint"], adapter="sim", adapter_config=device,
            capacity_kwh=device["capacity_kwh"], max_discharge_kw=device.get("max_discharge_kw", 0.0),
            prefs=OwnerPrefs(min_soc_pct=20.0), state_url=f"sqlite:///{spec['state']}"))
    return configs


def local_database(path: str):
    """The agents' shared SQLite file in WAL mode without a sync per commit: hundreds of
    agents in one event loop would otherwise wait on the disk for every reading."""
    from sqlalchemy import event

    from ven.store import LocalDatabase
    database = LocalDatabase(f"sqlite:///{path}")

    @event.listens_for(database.engine, "connect")
    def _pragmas(connection, _record):
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
    database.engine.dispose()      # the connection that created the tables had neither
    return database


def resume_registrations(poll_s: float) -> None:
    """Every Link20b takes up the registration the bench stored for its VEN instead of
    registering (see SPEC's resume_poll_s): what openleadr's OpenADRClient.run does once
    registered, minus its logging-only event-status job."""
    import random
    from datetime import datetime, timedelta, timezone

    from ven.openadr20b.link import Link20b

    async def resumed(link) -> bool:
        client = link.client
        client.loop = asyncio.get_running_loop()
        client.ven_id, client.registration_id = client.ven_name, f"reg-{client.ven_name}"
        client.poll_frequency = timedelta(seconds=poll_s)
        first = datetime.now(timezone.utc) + timedelta(seconds=random.uniform(0, poll_s))
        client.scheduler.add_job(client._poll, trigger="interval", seconds=poll_s,
                                 next_run_time=first)
        client.scheduler.add_job(client._event_cleanup, trigger="interval",
                                 seconds=client.events_clean_up_period)
        client.scheduler.start()
        return True
    Link20b._register = resumed


async def run(spec: dict) -> None:
    from flexadr.clock import SystemClock
    from ven.fleet import Fleet
    tally = Tally()
    tally.install()
    pauses = GcPauses().install()
    if spec.get("resume_poll_s"):
        resume_registrations(spec["resume_poll_s"])
    fleet = Fleet(agent_configs(spec), SystemClock(),
                  max_concurrent_starts=spec.get("start_concurrency", START_CONCURRENCY),
                  database=local_database(spec["state"]))
    await fleet.start()
    # An agent whose first registration timed out tries again every 30 s (ven.agent).
    deadline = asyncio.get_running_loop().time() + spec.get("register_s", REGISTER_S)
    while not all(agent.registered for agent in fleet.agents) and \
            asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(1)
    _say({"registered": sum(agent.registered for agent in fleet.agents), "cpu_s": cpu_s(),
          "rss_mib": round(rss_mib(), 1)})
    loop = asyncio.get_running_loop()
    while (await loop.run_in_executor(None, sys.stdin.readline)).strip() not in ("drain", ""):
        pass
    cpu, rss, gc_figures = cpu_s(), rss_mib(), pauses.figures()
    left = await fleet.drain(spec.get("drain_s", DRAIN_S))
    async with asyncio.timeout(60):
        await fleet.stop()
    _say({"unsent_intervals": left, "cpu_s": cpu, "rss_mib": round(rss, 1), **gc_figures,
          **tally.result()})


def _say(line: dict) -> None:
    print(json.dumps(line), flush=True)


def main() -> None:
    raise_fd_limit()
    quiet_logs()
    asyncio.run(run(json.loads(Path(sys.argv[1]).read_text())))


if __name__ == "__main__":
    main()
