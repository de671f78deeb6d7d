"""vtn.telemetry, pure: registration metadata -> meaning, and the limits of belief."""
from datetime import datetime, timedelta, timezone

import pytest

from vtn import telemetry
from vtn.telemetry import KW, KWH, SOC_PCT, Registration

NOW = datetime(2026, 7, 1, 12, tzinfo=timezone.utc)
Q = timedelta(minutes=15)
USAGE = "TELEMETRY_USAGE"


def reg(item, description=None, unit=None, scale="none", report_name=USAGE, r_id="x"):
    return Registration(report_name, r_id, item, description, unit, scale)


@pytest.mark.parametrize("registration, quantity, factor", [
    (reg("powerReal", "RealPower", "W", "k"), KW, 1.0),
    (reg("powerReal", "RealPower", "W", "none"), KW, 1e-3),
    (reg("powerReal", "RealPower", "W", "M"), KW, 1e3),
    (reg("customUnit", "power", "W"), KW, 1e-3),
    (reg("customUnit", "Real Power", "kW"), KW, 1.0),
    (reg("energyReal", "RealEnergy", "Wh", "k"), KWH, 1.0),
    (reg("customUnit", "energy", "kWh"), KWH, 1.0),
    (reg("customUnit", "stateOfCharge", "%"), SOC_PCT, 1.0),
    (reg(None, report_name="TELEMETRY_STATUS", r_id="plugged_in"), "plugged_in", 1.0),
])
def test_declared_meaning(registration, quantity, factor):
    found = telemetry.meaning(registration, registration.r_id)
    assert found.quantity == quantity and found.factor == pytest.approx(factor)


@pytest.mark.parametrize("registration, why", [
    (None, "rID x was not registered"),
    (reg("voltage", "Voltage", "V"), "voltage 'Voltage' is not stored by meaning"),
    (reg("customUnit", "power", "hp"), "kw in unit hp"),
    (reg("powerReal", "RealPower", "W", "q"), "unknown siScaleCode q"),
    (reg("customUnit", "stateOfCharge", "fraction"), "state of charge in fraction, not %"),
    (reg(None, r_id="kw"), "no itemBase"),     # our own rID name means nothing in USAGE
])
def test_what_cannot_be_read_says_why(registration, why):
    found = telemetry.meaning(registration, "x" if registration is None else registration.r_id)
    assert (found.quantity, found.why_not) == (None, why)


def test_resource_status_fields():
    assert telemetry.resource_status({
        "online": False, "manual_override": True,
        "load_control_state": {"capacity": {"current": 0.25, "max": 1},
                               "set_point": {"min": 0, "current": 6.6}}}) == {
        "online": False, "manual_override": True, "load_capacity": 0.25, "load_setpoint": 6.6}


def test_limits_come_from_the_enrolment():
    lim = telemetry.limits(7.2, NOW - timedelta(days=30), NOW, Q)
    assert lim.max_kw == pytest.approx(9.0)
    assert telemetry.check_value(KW, 9.0, Q, lim) is None
    assert telemetry.check_value(KW, -9.01, Q, lim) == "kw -9.01 is beyond +-9 kW (enrolled capacity x 1.25)"
    assert telemetry.check_value(KWH, 9.0, Q, lim) is None       # an hour at full power
    assert "beyond +-9 kWh" in telemetry.check_value(KWH, 9.5, Q, lim)
    assert telemetry.check_value("online", 0.5, Q, lim) == "online 0.5 is neither 0 nor 1"
    assert telemetry.check_interval(NOW - timedelta(days=31), Q, lim).endswith(
        "before enrolment 2026-06-01T12:00:00+00:00")
    assert telemetry.check_interval(NOW + timedelta(seconds=59), Q, lim) is None
    unknown = telemetry.limits(None, None, NOW, Q)
    assert unknown.max_kw == telemetry.DEFAULT_MAX_KW
    assert unknown.earliest == NOW - telemetry.MAX_AGE


def test_rids_of_one_sampling_share_an_interval_and_a_second_value_is_kept_raw():
    regs = {"a": reg("powerReal", "RealPower", "W", "k", r_id="a"),
            "b": reg("powerReal", "RealPower", "W", "k", r_id="b"),
            "s": reg("customUnit", "stateOfCharge", "%", r_id="s")}
    lim = telemetry.limits(10.0, None, NOW, Q)
    start = NOW - Q

    def iv(r_id, value, offset_us=0):
        return {"dtstart": start + timedelta(microseconds=offset_us),
                "report_payload": {"r_id": r_id, "value": value}}
    found = telemetry.interpret(USAGE, [iv("a", 2.0), iv("s", 50.0, 80), iv("b", 3.0, 160)],
                                regs, Q, lim)
    assert list(found.points) == [start]
    assert found.points[start].values == {KW: 2.0, SOC_PCT: 50.0}
    (raw,) = found.raw
    assert (raw.r_id, raw.reason) == ("b", "a second kw for this interval")
    assert found.rejected == []


def test_a_raw_value_and_a_reading_of_one_sampling_share_its_interval():
    regs = {"v": reg("voltage", "Voltage", "V", r_id="v"),
            "a": reg("powerReal", "RealPower", "W", "k", r_id="a")}
    start = NOW - Q
    found = telemetry.interpret(USAGE, [
        {"dtstart": start, "report_payload": {"r_id": "v", "value": 230.0}},
        {"dtstart": start + timedelta(microseconds=40), "report_payload": {"r_id": "a", "value": 1.0}},
        {"dtstart": start + Q, "report_payload": {"r_id": "a", "value": 2.0}}],
        regs, Q, telemetry.limits(10.0, None, NOW, Q))
    assert [(s, p.values) for s, p in found.points.items()] == [(start, {KW: 1.0}),
                                                                  (start + Q, {KW: 2.0})]
    assert [(r.r_id, r.start) for r in found.raw] == [("v", start)]


def test_an_interval_without_a_start_is_rejected_not_a_crash():
    found = telemetry.interpret(USAGE, [{"report_payload": {"r_id": "a", "value": 1.0}}],
                                {}, Q, telemetry.limits(10.0, None, NOW, Q))
    assert [(r.reason, r.check) for r in found.rejected] == [
        ("interval without a dtstart and duration", "interval")]
    assert found.points == {} and found.raw == []


def test_an_interval_ending_after_year_9999_is_rejected_not_a_crash():
    start = datetime(9999, 12, 31, tzinfo=timezone.utc)
    found = telemetry.interpret(USAGE, [{"dtstart": start, "duration": timedelta(days=36500),
                                         "report_payload": {"r_id": "a", "value": 1.0}}],
                                {}, Q, telemetry.limits(10.0, None, NOW, Q))
    (rejected,) = found.rejected
    assert (rejected.start, rejected.end, rejected.check) == (start, None, "interval")
