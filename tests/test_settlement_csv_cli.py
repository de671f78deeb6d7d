"""CSV readers (errors name file, line and problem), the store adapter, and
`vtn settle` end to end on files."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from vtn.commands import settle as settle_cmd
from vtn.settlement import EventRecord, TelemetryInterval
from vtn.settlement.csvio import CsvSource, SettlementInputError, parse_input
from vtn.settlement.output import write_atomically
from vtn.settlement.store_adapter import from_store_rows

EVENTS = """event_id,start,end
e1,2026-07-20T15:00:00-04:00,2026-07-20T17:00:00-04:00
e2,2026-07-21T19:00:00Z,2026-07-21T21:00:00Z
"""
# p1: e1 straddling 60-min interval (18:30-19:30Z at 6 kW: half inside) then 2 kW;
#     e2 4 kW for 1 h of 2 -> e1 = (3 + 3) / 2 = 3.0, e2 = 2.0, season 2.5 -> $687.50.
# p2: e1 5-min intervals at 3 kW for the whole event, e2 nothing: 3.0, 0 -> 1.5 -> $412.50.
TELEMETRY = "participant,interval_start,interval_end,kw\n" + "\n".join([
    "p1,2026-07-20T18:30:00Z,2026-07-20T19:30:00Z,6",
    "p1,2026-07-20T19:30:00Z,2026-07-20T21:00:00Z,2",
    "p1,2026-07-21T19:00:00Z,2026-07-21T20:00:00Z,4",
] + [f"p2,2026-07-20T{19 + m // 60:02d}:{m % 60:02d}:00Z,2026-07-20T{19 + (m + 5) // 60:02d}:{(m + 5) % 60:02d}:00Z,3"
     for m in range(0, 120, 5)]) + "\n"


def parse(events: str = EVENTS, telemetry: str = TELEMETRY, **kw):
    return parse_input(CsvSource("E.csv", events), CsvSource("T.csv", telemetry), **kw)


def problems(**kw) -> list[str]:
    with pytest.raises(SettlementInputError) as err:
        parse(**kw)
    return [str(p) for p in err.value.problems]


def test_good_files_parse():
    data = parse(event_data_only=True)
    assert [e.event_id for e in data.events] == ["e1", "e2"]
    assert data.events[0].start_utc == datetime(2026, 7, 20, 19, tzinfo=timezone.utc)
    assert len(data.telemetry) == 27


def test_missing_column_names_file_and_header():
    assert problems(telemetry="participant,interval_start,kw\np1,2026-07-20T19:00:00Z,1\n") == [
        "T.csv:1: missing column(s) interval_end; header is participant,interval_start,kw"]


def test_unparseable_and_naive_times_name_the_line():
    bad = EVENTS + "e3,yesterday,2026-07-22T21:00:00Z\ne4,2026-07-23T19:00:00,2026-07-23T21:00:00Z\n"
    assert problems(events=bad) == [
        "E.csv:4: start: unparseable time 'yesterday' (ISO 8601 with UTC offset expected)",
        "E.csv:5: start: time '2026-07-23T19:00:00' has no UTC offset"]


def test_overlapping_intervals_name_both_lines():
    bad = TELEMETRY + "p1,2026-07-20T20:45:00Z,2026-07-20T21:00:00Z,1\n"
    (msg,) = problems(telemetry=bad)
    assert msg.startswith("T.csv:29: interval 2026-07-20T20:45:00+00:00..2026-07-20T21:00:00+00:00 "
                          "of participant 'p1' overlaps line 3")


def test_interval_outside_every_event_is_an_error_for_event_data_programs():
    bad = TELEMETRY + "p1,2026-07-20T12:00:00Z,2026-07-20T12:15:00Z,1\n"
    assert problems(telemetry=bad, event_data_only=True) == [
        "T.csv:29: interval 2026-07-20T12:00:00+00:00..2026-07-20T12:15:00+00:00 is outside every event"]
    assert len(parse(telemetry=bad, event_data_only=False).telemetry) == 28


def test_unknown_participant_and_bad_numbers():
    participants = CsvSource("P.csv", "participant,rate_class\np1,residential\n")
    msgs = problems(telemetry=TELEMETRY.replace("p1,2026-07-21T19:00:00Z,2026-07-21T20:00:00Z,4",
                                                "p1,2026-07-21T19:00:00Z,2026-07-21T20:00:00Z,four"),
                    participants=participants)
    assert msgs[0] == "T.csv:4: kw: not a number: 'four'"
    assert msgs[1] == "T.csv:5: unknown participant 'p2' (not in P.csv)"
    assert len(msgs) == 1 + 24


def test_unknown_event_in_opt_outs():
    msgs = problems(opt_outs=CsvSource("O.csv", "participant,event_id\np1,e9\n"))
    assert msgs == ["O.csv:2: unknown event_id 'e9'"]


def test_store_rows_get_the_same_checks_and_lose_non_event_data():
    t = lambda s: datetime.fromisoformat(s)  # noqa: E731
    events = [EventRecord("e1", t("2026-07-20T19:00:00+00:00"), t("2026-07-20T21:00:00+00:00"))]
    rows = [TelemetryInterval("v1", t("2026-07-20T18:00:00+00:00"), t("2026-07-20T19:00:00+00:00"), 1.0),
            TelemetryInterval("v1", t("2026-07-20T19:00:00+00:00"), t("2026-07-20T21:00:00+00:00"), 2.0)]
    assert len(from_store_rows(events, rows, event_data_only=True).telemetry) == 1
    # An overlap (here a duplicate) is not an error: the first received counts, flagged.
    resolved = from_store_rows(events, rows + [rows[1]])
    assert resolved.telemetry == tuple(rows)
    assert [(f.participant, f.kind) for f in resolved.flags] == [("v1", "overlap")]


# ---------------------------------------------------------------- the command

def run_settle(tmp_path: Path, *extra: str, events: str = EVENTS, telemetry: str = TELEMETRY) -> int:
    (tmp_path / "E.csv").write_text(events)
    (tmp_path / "T.csv").write_text(telemetry)
    import argparse
    parser = argparse.ArgumentParser()
    settle_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["settle", "--events", str(tmp_path / "E.csv"),
                              "--telemetry", str(tmp_path / "T.csv"), *extra])
    return args.func(args)


def test_settle_json_document(tmp_path):
    out = tmp_path / "season.json"
    assert run_settle(tmp_path, "--program", "connected_solutions", "--out", str(out)) == 0
    doc = json.loads(out.read_text())
    assert doc["program"] == "connected_solutions"
    p1, p2 = doc["participants"]
    assert p1["participant"] == "p1"
    assert [(e["event_id"], e["kw"]) for e in p1["events"]] == [("e1", 3.0), ("e2", 2.0)]
    assert (p1["season_kw"], p1["payment_usd"]) == (2.5, 687.5)
    assert (p2["season_kw"], p2["payment_usd"]) == (1.5, 412.5)
    assert doc["totals"]["payment_usd"] == 1100.0
    assert doc["totals"]["participants"] == 2


def test_settle_csv_commercial(tmp_path, capsys):
    # Commercial $200/kW: 2.5 -> $500, 1.5 -> $300.
    assert run_settle(tmp_path, "--program", "connected_solutions", "--rate-class", "commercial",
                      "--format", "csv") == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split(",")
    assert header[:4] == ["participant", "season_kw", "payment_usd", "rate_class"]
    assert header[-2:] == ["kw:e1", "kw:e2"]
    assert lines[1].split(",")[:3] == ["p1", "2.5", "500.0"]
    assert lines[2].split(",")[-2:] == ["3.0", "0.0"]


def test_bad_input_writes_nothing_and_says_where(tmp_path, capsys):
    out = tmp_path / "season.json"
    out.write_text("previous report\n")
    bad = TELEMETRY + "p1,2026-07-20T12:00:00Z,not-a-time,1\n"
    assert run_settle(tmp_path, "--program", "connected_solutions", "--out", str(out), telemetry=bad) == 2
    assert "T.csv:29: interval_end: unparseable time 'not-a-time'" in capsys.readouterr().err
    assert out.read_text() == "previous report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["E.csv", "T.csv", "season.json"]


def test_atomic_write_leaves_no_temp_file_on_failure(tmp_path):
    target = tmp_path / "r.json"
    write_atomically(target, "one\n")
    with pytest.raises(TypeError):
        write_atomically(target, 42)          # fails inside the write
    assert target.read_text() == "one\n"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_settle_from_the_vtn_store(tmp_path, capsys):
    # Store convention: kW INTO the device, so -4 kW is 4 kW of discharge.
    # e1 19:00-21:00Z: -4 kW for the first hour only -> 2.0 kW; e2 opted out -> 0.
    # Season (2.0 + 0) / 2 = 1.0 kW -> $275.00.
    from vtn.store import Event, Store, Ven
    store = Store(f"sqlite:///{tmp_path / 'vtn.sqlite'}")
    store.enrol(Ven(ven_id="v1", ven_name="v1", fingerprint="aa", program_id="connected_solutions",
                    device_kind="battery"))
    for eid, day in (("e1", 20), ("e2", 21)):
        store.add_event(Event(event_id=eid, program_id="connected_solutions", market_context="m",
                              signal_name="LOAD_DISPATCH", signal_type="setpoint", signal_value=5.0,
                              start_utc=datetime(2026, 7, day, 19, tzinfo=timezone.utc),
                              end_utc=datetime(2026, 7, day, 21, tzinfo=timezone.utc),
                              created_at=datetime(2026, 7, 1, tzinfo=timezone.utc)), ["v1"])
    store.record_telemetry("v1", datetime(2026, 7, 20, 19, tzinfo=timezone.utc),
                           datetime(2026, 7, 20, 20, tzinfo=timezone.utc), kw=-4.0)
    store.record_telemetry("v1", datetime(2026, 7, 20, 12, tzinfo=timezone.utc),
                           datetime(2026, 7, 20, 13, tzinfo=timezone.utc), kw=-9.0)   # no event: dropped
    store.record_opt("v1", "e2", "optOut", datetime(2026, 7, 21, tzinfo=timezone.utc))
    import argparse
    parser = argparse.ArgumentParser()
    settle_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["settle", "--program", "connected_solutions", "--season", "2026",
                              "--database", f"sqlite:///{tmp_path / 'vtn.sqlite'}"])
    assert args.func(args) == 0
    (p,) = json.loads(capsys.readouterr().out)["participants"]
    assert [(e["kw"], e["status"]) for e in p["events"]] == [(2.0, "partial_data"), (0.0, "opted_out")]
    assert (p["season_kw"], p["payment_usd"]) == (1.0, 275.0)


def test_optional_status_columns_and_their_errors():
    telemetry = ("participant,interval_start,interval_end,kw,plugged_in,soc_pct,battery_kw\n"
                 "p1,2026-07-20T19:00:00Z,2026-07-20T20:00:00Z,6,yes,55,4\n"
                 "p1,2026-07-20T20:00:00Z,2026-07-20T21:00:00Z,6,,,\n")
    first, second = parse(telemetry=telemetry).telemetry
    assert (first.plugged_in, first.soc_pct, first.battery_kw) == (True, 55.0, 4.0)
    assert (second.plugged_in, second.soc_pct, second.battery_kw) == (None, None, None)
    bad = telemetry.replace(",yes,55,", ",maybe,55,").replace(",6,,,", ",6,,140,")
    assert problems(telemetry=bad) == ["T.csv:2: plugged_in: not a yes/no value: 'maybe'",
                                       "T.csv:3: soc_pct: 140.0 outside 0-100"]


def test_non_event_data_must_lie_in_the_season_year():
    # Managed charging needs non-event days (baseline), but not another year's.
    # 2026-01-01 03:00Z is still Dec 31 2025 in New York.
    from zoneinfo import ZoneInfo
    bad = TELEMETRY + "p1,2026-01-01T03:00:00Z,2026-01-01T04:00:00Z,1\np1,2026-03-01T12:00:00Z,2026-03-01T13:00:00Z,1\n"
    assert problems(telemetry=bad, tz=ZoneInfo("America/New_York")) == [
        "T.csv:29: interval 2026-01-01T03:00:00+00:00..2026-01-01T04:00:00+00:00 is outside the season year 2026"]


def test_settle_a_non_discharge_program_from_files(tmp_path, capsys):
    # Managed charging on the same files: no baseline days in the data, so no
    # shift is credited; payment is the annual $50 for each participant.
    assert run_settle(tmp_path, "--program", "managed_charging") == 0
    doc = json.loads(capsys.readouterr().out)
    assert [p["payment_usd"] for p in doc["participants"]] == [50.0, 50.0]
    assert doc["participants"][0]["events"][0]["baseline_kw"] is None
    assert doc["totals"]["opt_outs"] == 0


def test_vtn_cli_has_the_settle_subcommand(tmp_path, capsys):
    from vtn.cli import main
    (tmp_path / "E.csv").write_text(EVENTS)
    (tmp_path / "T.csv").write_text(TELEMETRY)
    assert main(["settle", "--program", "connected_solutions", "--events", str(tmp_path / "E.csv"),
                 "--telemetry", str(tmp_path / "T.csv")]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["payment_usd"] == 1100.0


def test_missing_and_non_utf8_files(tmp_path):
    from vtn.settlement.csvio import read_input
    (tmp_path / "E.csv").write_text(EVENTS)
    with pytest.raises(SettlementInputError, match=r"T\.csv:0: no such file"):
        read_input(tmp_path / "E.csv", tmp_path / "T.csv")
    (tmp_path / "T.csv").write_bytes(TELEMETRY.encode() + b"p1,\xff\xfe,x,1\n")
    with pytest.raises(SettlementInputError, match=r"T\.csv:0: not UTF-8 text"):
        read_input(tmp_path / "E.csv", tmp_path / "T.csv")


def test_unwritable_output_is_reported_not_raised(tmp_path, capsys):
    out = tmp_path / "no-such-dir" / "season.json"
    assert run_settle(tmp_path, "--program", "connected_solutions", "--out", str(out)) == 1
    assert "cannot write" in capsys.readouterr().err
    assert not out.parent.exists()


def test_usage_errors(tmp_path, capsys):
    import argparse
    parser = argparse.ArgumentParser()
    settle_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["settle", "--program", "byod_vpp", "--season", "2026"])
    assert args.func(args) == 2
    assert "--season needs --database URL or --config VTN.toml" in capsys.readouterr().err
    args = parser.parse_args(["settle", "--program", "byod_vpp", "--events", "E.csv"])
    assert args.func(args) == 2
    assert "--events needs --telemetry" in capsys.readouterr().err
