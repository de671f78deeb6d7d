"""What the replay plays: the time map, the fleet, the storm and the emergency. Pure.

The VTN, the VEN agents and the simulated devices run on the wall clock with
`time_scale` compression, exactly as in the demo (openleadr derives event
status from the wall clock, so nothing on the wire may live in 2018). The
`Timeline` maps each moment of the replayed history onto that compressed wall
time and back: the planner decides in history time (a ManualClock set to each
notice deadline), the VTN publishes the mapped wall times, and settlement maps
the store's wall times back to history before it applies the program rules.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from flexadr.clock import ceil_to
from schedules.storms import Alert

UTC = timezone.utc
NEW_YORK = ZoneInfo("America/New_York")
TELEMETRY = timedelta(minutes=15)     # the programs' reporting interval (history time)


@dataclass(frozen=True)
class Timeline:
    history_start: datetime      # UTC
    wall_start: datetime         # UTC, a multiple of the wall telemetry interval
    scale: float                 # history seconds per wall second

    @classmethod
    def starting(cls, history_start: datetime, wall_now: datetime, day_s: float,
                 lead: timedelta) -> "Timeline":
        scale = 86400.0 / day_s
        # Wall telemetry intervals must map onto whole history quarter-hours.
        return cls(history_start, ceil_to(wall_now + lead, TELEMETRY / scale), scale)

    def to_wall(self, when: datetime) -> datetime:
        return self.wall_start + (when - self.history_start) / self.scale

    def to_history(self, when: datetime) -> datetime:
        offset = (when - self.wall_start) * self.scale
        # A wall microsecond is `scale` history microseconds: snap to whole seconds, so
        # interval edges land back on their quarter-hours.
        snapped = round(offset / timedelta(seconds=1))
        return self.history_start + timedelta(seconds=snapped)


# --- the fleet --------------------------------------------------------------------------

@dataclass(frozen=True)
class Member:
    """One VEN of the replayed fleet and the device behind it."""
    name: str
    role: str                    # key of ROLES
    program_id: str
    device: dict                 # sim DeviceSpec fields (kind, capacity_kwh, ...)
    min_soc_pct: float
    ready_by: time | None = None
    ready_soc_pct: float = 80.0
    cycle_cap_per_year: float | None = None
    site_limit_kw: float | None = None     # the depot: several buses behind one connection
    adapter: str = "sim"                    # or a real adapter on its device simulator


BUS_KWH, BUSES, DEPOT_LIMIT_KW = 155.0, 4, 60.0
# role -> (program, device spec). Sizes: a 13.5 kWh / 5 kW home battery, a 98 kWh
# bidirectional pickup on an 11.5 / 9.6 kW charger, a 75 kWh EV on 7.2 kW.
ROLES = {
    "cs_battery": ("connected_solutions", dict(kind="battery", capacity_kwh=13.5, soc_pct=85.0,
                                               max_charge_kw=5.0, max_discharge_kw=5.0,
                                               charge_target_pct=95.0)),
    "cs_v2g": ("connected_solutions", dict(kind="ev_v2g", capacity_kwh=98.0, soc_pct=70.0,
                                           max_charge_kw=11.5, max_discharge_kw=9.6,
                                           charge_target_pct=90.0)),
    "mc_ev": ("managed_charging", dict(kind="ev_managed", capacity_kwh=75.0, soc_pct=30.0,
                                       max_charge_kw=7.2, charge_target_pct=90.0)),
    "v2x_car": ("v2x_demo", dict(kind="ev_v2g", capacity_kwh=98.0, soc_pct=75.0,
                                 max_charge_kw=11.5, max_discharge_kw=9.6,
                                 charge_target_pct=90.0)),
    "v2x_depot": ("v2x_demo", dict(kind="ev_v2g", capacity_kwh=BUS_KWH * BUSES, soc_pct=80.0,
                                   max_charge_kw=DEPOT_LIMIT_KW, max_discharge_kw=DEPOT_LIMIT_KW,
                                   charge_target_pct=90.0)),
    "byod_battery": ("byod_vpp", dict(kind="battery", capacity_kwh=13.5, soc_pct=90.0,
                                      max_charge_kw=5.0, max_discharge_kw=5.0,
                                      charge_target_pct=95.0)),
}
# The mix, repeated: managed charging is the biggest program, the depot is one site.
MIX = ("cs_battery", "mc_ev", "byod_battery", "v2x_car", "cs_v2g", "mc_ev", "byod_battery",
       "cs_battery")
BYOD_CYCLES_PER_YEAR = 50.0
# Real adapters on their device simulators (adapters/testing/), by a member's place among
# its role's members, in turn: managed cars on OCPP 1.6 and OCPP 2.0.1 chargers and
# through a car maker's cloud (telematics), BYOD batteries on a SunSpec inverter over
# Modbus TCP, V2X cars and V2G pickups on OCPP 2.1 (V2X) chargers; the others on `sim`.
# Not (yet) the ConnectedSolutions batteries, whose discharge is re-spread at every
# boundary (a burst of Modbus writes each time), nor the school-bus depot (one device at
# a site limit): see docs/replay.md.
ADAPTERS = {"mc_ev": ("ocpp16", "ocpp2", "telematics", "sim"),
            "byod_battery": ("sunspec", "sim"),
            "v2x_car": ("ocpp2", "sim"),
            "cs_v2g": ("ocpp2", "sim")}


def fleet(count: int, seed: int, real_adapters: bool = True) -> list[Member]:
    """`count` VENs: the mix in turn, the last one the school-bus depot; some on real
    adapters and their device simulators (ADAPTERS), or with `real_adapters` False
    all on `sim`."""
    if count < len(MIX) + 1:
        raise ValueError(f"the replay needs at least {len(MIX) + 1} VENs (one of each kind)")
    rng = random.Random(seed)
    roles = [MIX[i % len(MIX)] for i in range(count - 1)] + ["v2x_depot"]
    members = []
    seen = {role: 0 for role in ROLES}
    for i, role in enumerate(roles):
        program_id, spec = ROLES[role]
        turn = ADAPTERS.get(role, ("sim",)) if real_adapters else ("sim",)
        adapter, seen[role] = turn[seen[role] % len(turn)], seen[role] + 1
        device = dict(spec, soc_pct=round(spec["soc_pct"] + rng.uniform(-10, 5), 1))
        extra = {}
        if role == "mc_ev":
            extra = dict(ready_by=time(7, 0), ready_soc_pct=80.0)
        if role == "byod_battery":
            extra = dict(cycle_cap_per_year=BYOD_CYCLES_PER_YEAR)
        if role == "v2x_depot":
            extra = dict(site_limit_kw=DEPOT_LIMIT_KW)
        members.append(Member(name=f"ven-{i + 1:03d}-{role.replace('_', '-')}", role=role,
                              program_id=program_id, device=device,
                              min_soc_pct=30.0 if role == "v2x_depot" else 20.0,
                              adapter=adapter, **extra))
    return members


def silent_member(members: list[Member]) -> Member:
    """The device that stops answering: the first ConnectedSolutions battery."""
    return next(m for m in members if m.role == "cs_battery")


def opt_out_plan(members: list[Member], seed: int, share: float = 0.06) -> set[str]:
    """Owners who opt out of their programme's first event of each day (by VEN name)."""
    rng = random.Random(seed + 1)
    eligible = [m for m in members if m.role not in ("v2x_depot",)]
    return {m.name for m in eligible if rng.random() < share} or {eligible[1].name}


# --- the storm and the emergency ---------------------------------------------------------

@dataclass(frozen=True)
class Emergency:
    type: str
    start: datetime
    end: datetime
    declared: datetime
    description: str


def storm(first_day: date) -> Alert:
    """A severe thunderstorm warning over eastern Massachusetts on the window's first
    event day, issued during the evening events (CAP fields as NWS sends them)."""
    onset = datetime.combine(first_day, time(17, 40), NEW_YORK).astimezone(UTC)
    return Alert(id=f"flexadr-replay-storm-{first_day.isoformat()}",
                 event="Severe Thunderstorm Warning", severity="Severe", urgency="Immediate",
                 certainty="Observed", status="Actual", msg_type="Alert", sent_utc=onset,
                 onset_utc=onset, end_utc=onset + timedelta(minutes=65),
                 ugc=("MAZ014", "MAZ015", "MAZ016", "MAZ017"),
                 fips6=("025021", "025025"), area_desc="Eastern Norfolk; Suffolk; Eastern Essex")


def emergency(peak_day: date) -> Emergency:
    """ISO-NE capacity deficiency declared on the annual-peak day (at 17:00, with the
    load near its peak) for the hour after the evening events: a flex alert for BYOD
    batteries, no ConnectedSolutions event."""
    start = datetime.combine(peak_day, time(20, 0), NEW_YORK).astimezone(UTC)
    return Emergency("Type 1", start, start + timedelta(hours=1), start - timedelta(hours=3),
                     "capacity deficiency: flex alert")


def cap_feed(alerts: list[Alert], shift=lambda t: t) -> str:
    """An NWS CAP 1.1 ATOM index feed of `alerts`, its times passed through `shift`."""
    def iso(when: datetime) -> str:
        return shift(when).astimezone(UTC).isoformat()

    entries = []
    for a in alerts:
        entries.append(f"""<entry>
<id>{a.id}</id>
<updated>{iso(a.sent_utc)}</updated>
<published>{iso(a.sent_utc)}</published>
<title>{a.event} issued by NWS</title>
<cap:event>{a.event}</cap:event>
<cap:effective>{iso(a.onset_utc)}</cap:effective>
<cap:expires>{iso(a.end_utc)}</cap:expires>
<cap:status>{a.status}</cap:status>
<cap:msgType>{a.msg_type}</cap:msgType>
<cap:urgency>{a.urgency}</cap:urgency>
<cap:severity>{a.severity}</cap:severity>
<cap:certainty>{a.certainty}</cap:certainty>
<cap:areaDesc>{a.area_desc}</cap:areaDesc>
<cap:geocode>
<valueName>FIPS6</valueName>
<value>{' '.join(a.fips6)}</value>
<valueName>UGC</valueName>
<value>{' '.join(a.ugc)}</value>
</cap:geocode>
</entry>""")
    return ("<?xml version='1.0' encoding='UTF-8'?>\n"
            "<feed xmlns='http://www.w3.org/2005/Atom' "
            "xmlns:cap='urn:oasis:names:tc:emergency:cap:1.1'>\n"
            "<id>flexadr-replay</id>\n" + "\n".join(entries) + "\n</feed>\n")


def emergencies_csv(declared: list[Emergency]) -> str:
    """The declared-emergencies file of schedules/emergencies.py."""
    lines = ["type,start,end,declared,description"]
    lines += [f"{e.type},{e.start.isoformat()},{e.end.isoformat()},{e.declared.isoformat()},"
              f"{e.description}" for e in declared]
    return "\n".join(lines) + "\n"


# --- the commute ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Trip:
    """A managed-charging car's morning trip: it comes home (by noon) before the day's
    event window (13:00) with less charge (the sim has no driving of its own). Not mid-event:
    an agent re-applies its commands only after telling the VTN the car is back, and
    under load that round trip lets the car charge in the event and stalls sampling."""
    ven: str
    leaves: datetime             # UTC
    returns: datetime            # UTC
    soc_used_pct: float


def commutes(members: list[Member], first_day: date, last_day: date, seed: int) -> list[Trip]:
    rng = random.Random(seed + 2)
    trips = []
    day = first_day
    while day <= last_day:
        for m in members:
            if m.role != "mc_ev":
                continue
            leaves = datetime.combine(day, time(7, 30), NEW_YORK) + timedelta(minutes=rng.randint(0, 60))
            # Home by noon: the replay plugs the car in at its next tick (15 minutes) and the
            # agent sees it at its next sample, so its event's commands are in place by 13:00.
            returns = datetime.combine(day, time(11, 0), NEW_YORK) + timedelta(minutes=rng.randint(0, 60))
            trips.append(Trip(m.name, leaves.astimezone(UTC), returns.astimezone(UTC),
                              round(rng.uniform(25, 45), 1)))
        day += timedelta(days=1)
    return trips
