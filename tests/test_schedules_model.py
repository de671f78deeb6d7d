"""Program files: the four shipped programs load, and each class of error is reported."""
from __future__ import annotations

import tomllib
from datetime import date, time, timedelta
from pathlib import Path

import pytest

from schedules import model
from schedules.model import ProgramError
from vtn.commands import programs as programs_cmd

PROGRAMS = model.PROGRAMS_DIR
CS_TEXT = (PROGRAMS / "connected_solutions.toml").read_text()


def test_all_four_programs_load_with_their_rules():
    progs = model.load_all()
    assert set(progs) == {"connected_solutions", "managed_charging", "v2x_demo", "byod_vpp"}
    cs = progs["connected_solutions"]
    assert (cs.budget.min_per_season, cs.budget.typical_per_season,
            cs.budget.max_per_season) == (30, 45, 60)
    assert cs.window == model.DailyWindow(time(15), time(20))
    assert cs.durations == (timedelta(hours=2), timedelta(hours=3))
    assert cs.season.contains(date(2019, 6, 1)) and not cs.season.contains(date(2019, 10, 1))
    assert cs.payment["residential_usd_per_kw"] == 275
    mc = progs["managed_charging"]
    assert mc.days.weekends is False and mc.fixed_window
    assert mc.followup == timedelta(hours=4) and mc.notice == timedelta(hours=24)
    assert mc.test_event.month == 6 and not mc.test_event.count_in_budget
    assert mc.storms[0].before == timedelta(hours=48)
    v2x = progs["v2x_demo"]
    assert v2x.follows == "connected_solutions" and len(v2x.clean_peak) == 4
    byod = progs["byod_vpp"]
    assert byod.budget.max_per_month == 8 and byod.limits.cycles_per_year == 50
    assert byod.storms[0].action is model.StormAction.NO_DISCHARGE_CHARGE_FULL


def test_existing_callers_names_still_work():
    cs = model.load("connected_solutions")
    assert cs.id == "connected_solutions" and cs.market_context.startswith("http")
    assert cs.timezone.key == "America/New_York"
    assert cs.dispatch is model.Dispatch.DISCHARGE
    assert cs.signal.name == "LOAD_DISPATCH" and cs.signal.unit == "kW"
    assert cs.notice == timedelta(hours=24) and cs.telemetry_interval == timedelta(minutes=15)
    assert cs.min_soc_pct == 20
    mc = model.load("managed_charging")
    assert mc.signal.value == 0.0 and mc.durations == (timedelta(hours=8),)


def _broken(edit) -> list[str]:
    data = tomllib.loads(CS_TEXT)
    edit(data)
    with pytest.raises(ProgramError) as info:
        model.from_mapping(data, "broken.toml")
    assert info.value.source == "broken.toml"
    return info.value.problems


def _has(problems: list[str], field: str, words: str) -> bool:
    return any(p.startswith(field + ":") and words in p for p in problems)


@pytest.mark.parametrize("edit, field, words", [
    (lambda d: d["window"].update(start="20:00", end="15:00"), "window.end", "not after start"),
    (lambda d: d["window"].update(durations_h=[2, 6]), "window.durations_h[1]", "longer than"),
    (lambda d: d["events"].update(max_per_season=10), "events.max_per_season", "below min"),
    (lambda d: d["events"].update(typical_per_season=70), "events.typical_per_season", "outside"),
    (lambda d: d["days"].update(holidays=["Independence Day", "Festivus"]),
     "days.holidays[1]", "unknown holiday name"),
    (lambda d: d.update(timezone="America/Boston"), "timezone", "unknown time zone"),
    (lambda d: d.pop("notice_h"), "notice_h", "missing"),
    (lambda d: d.update(notice_h=-1), "notice_h", "must be > 0"),
    (lambda d: d["season"].update(end="09-31"), "season.end", "no such date"),
    (lambda d: d["days"].update(extra_dates=["6/19"]), "days.extra_dates[0]", "not a date"),
    (lambda d: d["signal"].update(name="LOAD_DISPATCHING"), "signal.name", "not an OpenADR"),
    (lambda d: d["signal"].update(type="x-loadControlCapacity"), "signal.type", "not a type"),
    (lambda d: d.update(dispatch="explode"), "dispatch", "must be one of"),
    (lambda d: d["storms"][0].update(zones=["Boston"]), "storms[0].zones[0]", "not a UGC"),
    (lambda d: d["storms"][0].update(min_severity="Bad"), "storms[0].min_severity", "one of"),
    (lambda d: d["storms"][0].update(action="panic"), "storms[0].action", "one of"),
    (lambda d: d["payment"].update(residential=275), "payment.residential", "must end with"),
    (lambda d: d["payment"].update(residential_usd_per_kw=-1),
     "payment.residential_usd_per_kw", ">= 0"),
    (lambda d: d.update(windoww={}), "windoww", "unknown field"),
    (lambda d: d["window"].update(default_duration_h=4), "window.default_duration_h", "one of"),
    (lambda d: d["days"].update(weekdays=False, weekends=False), "days", "no day allowed"),
    (lambda d: d["events"].update(max_per_season="sixty"), "events.max_per_season", "must be int"),
    (lambda d: d.update(test_event={"rule": "whenever", "month": 6}), "test_event.rule",
     "unknown rule"),
    (lambda d: d.update(clean_peak=[
        {"name": "a", "start": "05-01", "end": "06-30", "window_start": "16:00",
         "window_end": "20:00"},
        {"name": "b", "start": "06-15", "end": "07-30", "window_start": "16:00",
         "window_end": "20:00"}]), "clean_peak", "overlap"),
])
def test_each_error_class_is_reported_with_its_field(edit, field, words):
    problems = _broken(edit)
    assert _has(problems, field, words), problems


def test_every_problem_is_collected_not_just_the_first():
    def edit(d):
        d["window"].update(start="20:00", end="15:00")
        d["events"].update(max_per_season=10)
        d["days"].update(holidays=["Festivus"])
        d.update(timezone="Mars/Olympus")
    problems = _broken(edit)
    fields = {p.split(":")[0] for p in problems}
    assert {"window.end", "events.max_per_season", "days.holidays[0]", "timezone"} <= fields


def test_cli_check_prints_problems_and_exits_1(tmp_path: Path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(CS_TEXT.replace('end = "20:00"', 'end = "14:00"')
                   .replace("max_per_season = 60", "max_per_season = 5"))
    assert programs_cmd.main(["programs", "check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "window.end: window end 14:00 is not after start 15:00" in out
    assert "events.max_per_season: max events 5 is below min events 30" in out


def test_cli_check_accepts_good_files_with_exit_0(capsys):
    files = [str(p) for p in sorted(PROGRAMS.glob("*.toml"))]
    assert programs_cmd.main(["programs", "check", *files]) == 0
    assert capsys.readouterr().out.count(": ok") == 4


def test_cli_check_reports_bad_toml_and_missing_file(tmp_path: Path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("id = ")
    assert programs_cmd.main(["programs", "check", str(bad), str(tmp_path / "nope.toml")]) == 1
    out = capsys.readouterr().out
    assert "toml: not valid TOML" in out and "file: cannot read" in out


def test_remaining_program_rules_are_fields():
    cs, mc = model.load("connected_solutions"), model.load("managed_charging")
    v2x, byod = model.load("v2x_demo"), model.load("byod_vpp")
    assert cs.limits.inverter_max_kw == 50 and cs.payment["lifetime_cap_usd"] == 25000
    assert cs.performance.missing_as_zero and cs.performance.season_over_all_events
    assert cs.performance.event_metric is model.PerformanceMetric.MEAN_KW_FULL_EVENT
    assert cs.conflicts_with == ("managed_charging",)
    assert v2x.conflicts_with == ("connected_solutions",)
    assert mc.connectivity == model.Connectivity(3, 7)
    assert (mc.limits.charger_min_kw, mc.limits.charger_max_kw) == (2.8, 19.2)
    assert mc.opt_out_max_per_season == 12 and "December" in mc.payment_schedule["annual_usd"]
    assert byod.limits.islanding_owner_control and byod.limits.min_soc_pct == 20
    assert byod.payment["flex_alert_export_usd_per_kwh"] == 2.0
    # "no event during a declared emergency (Type 1 / Type 2)"; "no event during a
    # severe outage or for the two days before a predicted severe outage"
    (cs_rule,) = cs.emergencies
    assert cs_rule.types == ("Type 1", "Type 2") and cs_rule.before == timedelta(0)
    (mc_rule,) = mc.emergencies
    assert mc_rule.types == ("Severe Outage",) and mc_rule.before == timedelta(hours=48)
    assert mc_rule.action is model.StormAction.NO_EVENT


@pytest.mark.parametrize("edit, field, words", [
    (lambda d: d.update(conflicts_with=["Connected Solutions"]), "conflicts_with[0]",
     "not a program id"),
    (lambda d: d["limits"].update(inverter_max_kw=0), "limits.inverter_max_kw", "> 0 kW"),
    (lambda d: d["performance"].update(event_metric="best_15_min"), "performance.event_metric",
     "must be one of"),
    (lambda d: d.update(connectivity={"offline_events_before_notice": 3}),
     "connectivity.reconnect_days", "missing"),
    (lambda d: d.update(payment_schedule={"bonus_usd": "May"}), "payment_schedule.bonus_usd",
     "no payment"),
    (lambda d: d["emergencies"][0].update(types=[]), "emergencies[0].types", "at least one"),
    (lambda d: d["emergencies"][0].update(types=["Type 1", ""]), "emergencies[0].types[1]",
     "non-empty"),
    (lambda d: d["emergencies"][0].update(action="shrug"), "emergencies[0].action", "one of"),
    (lambda d: d["emergencies"][0].update(before_h="two days"), "emergencies[0].before_h", ""),
    (lambda d: d["emergencies"][0].update(when="always"), "emergencies[0].when", "unknown field"),
])
def test_more_error_classes(edit, field, words):
    assert _has(_broken(edit), field, words)


@pytest.mark.parametrize("edit, field, words", [
    (lambda d: d["storms"][0].update(after_h=float("inf")), "storms[0].after_h", "finite"),
    (lambda d: d.update(notice_h=float("nan")), "notice_h", "finite"),
    (lambda d: d.update(notice_h=1e12), "notice_h", "at most"),
    (lambda d: d["window"].update(durations_h=[float("inf")]), "window.durations_h[0]",
     "positive number"),
    (lambda d: d["payment"].update(residential_usd_per_kw=float("inf")),
     "payment.residential_usd_per_kw", "finite"),
])
def test_numbers_must_be_finite_and_durations_bounded(edit, field, words):
    assert _has(_broken(edit), field, words)


def test_a_program_file_that_is_not_utf8_is_a_problem_not_a_traceback(tmp_path: Path, capsys):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"\xff\xfe" + CS_TEXT.encode())
    assert programs_cmd.main(["programs", "check", str(bad)]) == 1
    assert "file: not UTF-8 text (byte 0)" in capsys.readouterr().out
