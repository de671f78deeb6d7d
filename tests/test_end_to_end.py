"""The demo's flow, smaller: VTN + VENs over mTLS with signed 2.0b messages, one event."""
import asyncio
import logging
from collections import Counter

import pytest

from flexadr import profile_rules, xsd
from flexadr.demo import DemoOptions, run_demo


class ErrorLog(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.records = []

    def emit(self, record):
        # A VEN's poll cancelled by its own shutdown (APScheduler logs it as "raised an
        # exception") is not an error of either side.
        if record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError):
            return
        self.records.append(record.getMessage())


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from conftest import fresh_database_url
    database_url, drop = fresh_database_url(tmp_path_factory.mktemp("db"))
    import asyncio
    import logging

    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    messages: list[tuple[str, str, str]] = []   # (ven, direction, xml)

    def capture(agent):
        name = agent.config.ven_name
        agent.link.client.add_hook("before_send_xml", lambda xml: messages.append((name, "sent", xml)))
        agent.link.client.add_hook("after_receive_xml",
                              lambda xml: xml and messages.append((name, "received", xml)))

    options = DemoOptions(vens=6, lead_s=6, event_s=15, report_s=5, poll_s=1,
                          workdir=tmp_path_factory.mktemp("demo"), database_url=database_url)
    try:
        result = asyncio.run(run_demo(options, instrument=capture))
    finally:
        logging.getLogger().removeHandler(errors)
    result.errors = errors.records
    yield result, messages
    result.store.close()
    drop()


pytestmark = pytest.mark.db


def test_every_ven_registered(demo):
    result, _ = demo
    assert all(agent.registered for agent in result.agents)
    assert all(ven.registration_id for ven in result.store.vens())


def test_every_ven_got_the_event_and_its_answer_is_stored(demo):
    result, _ = demo
    for event in result.events:
        targets = result.store.targets(event.event_id)
        assert targets, event.event_id
        for target in targets:
            agent = next(a for a in result.agents if a.ven_id == target.ven_id)
            assert event.event_id in agent.decisions
            assert target.opt_type == agent.decisions[event.event_id].opt.value


def test_unplugged_car_opts_out_and_the_rest_opt_in(demo):
    result, _ = demo
    opts = {row.ven_id: row.opt for row in result.rows}
    unplugged = [a.ven_id for a in result.agents if not a.adapter.device.plugged_in]
    assert unplugged and all(opts[v] == "optOut" for v in unplugged)
    assert all(opt == "optIn" for ven, opt in opts.items() if ven not in unplugged)


def test_reported_kw_matches_what_the_devices_did(demo):
    result, _ = demo
    assert all(result.store.telemetry(agent.ven_id) for agent in result.agents)
    for row in result.rows:
        if abs(row.device_kw) < 0.05:
            assert abs(row.reported_kw) < 0.05, row
        else:
            assert row.reported_kw == pytest.approx(row.device_kw, rel=0.01), row
    assert any(row.device_kw > 1 for row in result.rows), "some device must have discharged"


def test_every_message_both_ways_is_valid_openadr_20b(demo):
    """The XSD and the profile rules it cannot express, for both sides' messages."""
    _, messages = demo
    invalid = []
    kinds = Counter()
    for ven, direction, xml in messages:
        try:
            tree = xsd.validate(xml)
        except xsd.SchemaViolation as err:
            invalid.append((ven, direction, err.errors[:3]))
            continue
        kinds[(direction, xsd.message_type(tree))] += 1
        if broken := profile_rules.violations(tree):
            invalid.append((ven, direction, broken[:3]))
    assert not invalid, invalid
    for expected in [("sent", "oadrCreatePartyRegistration"), ("received", "oadrCreatedPartyRegistration"),
                     ("sent", "oadrPoll"), ("received", "oadrDistributeEvent"),
                     ("sent", "oadrCreatedEvent"), ("sent", "oadrRegisterReport"),
                     ("received", "oadrRegisteredReport"), ("sent", "oadrUpdateReport"),
                     ("received", "oadrUpdatedReport")]:
        assert kinds[expected] > 0, f"no {expected} exchanged: {kinds}"


def test_neither_side_logged_an_error(demo):
    result, _ = demo
    assert result.errors == []
