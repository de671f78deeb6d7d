"""Every file reader the CLI offers, fed mutated real files: a clear error or a result,
never another exception (which the CLI would show as a traceback).

Inputs are real files with bytes flipped, inserted or cut, lines duplicated or
dropped, and hostile snippets (a DTD with entities, NUL, CR, 9999-12-31, inf)
spliced in. Bounded: a few hundred inputs per reader.
"""
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flexadr import data as shipped
from schedules import model, sources
from vtn.settlement import csvio

ROOT = Path(__file__).resolve().parents[1]
FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SNIPPETS = [b'<!DOCTYPE p [<!ENTITY e "x">]>', b"&e;", b"\x00", b"\r", b"\r\n", b"9999-12-31",
            b"inf", b"nan", b"-1e309", b"\xff\xfe", b'"', b",,,,", b"=", b"[[", b"\n\n"]


@st.composite
def mutated(draw, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        action = draw(st.sampled_from(["flip", "insert", "cut", "snippet", "line"]))
        if action == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif action == "cut":
            del data[at:at + draw(st.integers(1, 200))]
        elif action == "snippet":
            data[at:at] = draw(st.sampled_from(SNIPPETS))
        else:
            lines = bytes(data).split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i]) if draw(st.booleans()) else lines.pop(i)
            data = bytearray(b"\n".join(lines))
    return bytes(data)


def _head(name: str, lines: int = 60) -> bytes:
    """The first lines of a shipped data file: enough structure, small enough to fuzz fast."""
    return b"\n".join(shipped.read_bytes(name).split(b"\n")[:lines])


PROGRAM = (ROOT / "schedules" / "programs" / "connected_solutions.toml").read_bytes()


@FUZZ
@given(mutated(PROGRAM))
def test_program_files(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("p") / "program.toml"
    path.write_bytes(data)
    try:
        model.load(path)
    except model.ProgramError as err:
        assert err.problems


CSV_READERS = [
    ("isone_hourly_load_2015-07_2019-12.csv", sources.read_isone_csv),
    ("boston_logan_daily_weather_2010-2019.csv", sources.read_daily_weather),
    ("gfs_day_ahead_temperature_2025-2026_summers.csv", sources.read_weather_forecast),
    ("raw/nws_cap_atom_us_2018-08-15_IBM-cap.xml", sources.read_alerts),
]


@pytest.mark.parametrize("name, reader", CSV_READERS, ids=[n for n, _ in CSV_READERS])
def test_data_files(tmp_path_factory, name, reader):
    original = _head(name, 400 if name.endswith(".xml") else 60)

    @FUZZ
    @given(mutated(original))
    def run(data):
        path = tmp_path_factory.mktemp("d") / Path(name).name
        path.write_bytes(data)
        try:
            reader(path)
        except sources.DataFileError as err:
            assert str(err)
    run()


EMERGENCIES = (b"type,start,end,declared,description\n"
               b"Type 1,2018-08-29T14:00-04:00,2018-08-29T20:00-04:00,2018-08-29T10:00-04:00,heat\n"
               b"Severe outage,2018-09-02T00:00-04:00,2018-09-03T00:00-04:00,"
               b"2018-08-31T09:00-04:00,storm\n")


@FUZZ
@given(mutated(EMERGENCIES))
def test_emergencies_files(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("e") / "emergencies.csv"
    path.write_bytes(data)
    try:
        sources.read_emergencies(path)
    except sources.DataFileError as err:
        assert str(err)


EVENTS = b"event_id,start,end\ne1,2026-07-01T18:00:00+00:00,2026-07-01T21:00:00+00:00\n"
TELEMETRY = (b"participant,interval_start,interval_end,kw\n"
             b"p1,2026-07-01T18:00:00+00:00,2026-07-01T18:15:00+00:00,3.5\n"
             b"p1,2026-07-01T18:15:00+00:00,2026-07-01T18:30:00+00:00,3.4\n")


@FUZZ
@given(mutated(EVENTS), mutated(TELEMETRY))
def test_settlement_inputs(tmp_path_factory, events, telemetry):
    folder = tmp_path_factory.mktemp("s")
    (folder / "events.csv").write_bytes(events)
    (folder / "telemetry.csv").write_bytes(telemetry)
    try:
        csvio.read_input(folder / "events.csv", folder / "telemetry.csv", event_data_only=True)
    except csvio.SettlementInputError as err:
        assert err.problems


@pytest.mark.parametrize("data, words", [
    (b"type,st\rart,end\n", "missing column"),
    (EMERGENCIES.replace(b"\n", b"\r"), None),          # old-Mac line ends: read as rows
])
def test_emergencies_with_cr_line_ends(tmp_path, data, words):
    path = tmp_path / "emergencies.csv"
    path.write_bytes(data)
    if words is None:
        assert len(sources.read_emergencies(path)) == 2
        return
    with pytest.raises(sources.DataFileError) as err:
        sources.read_emergencies(path)
    assert words in str(err.value)
