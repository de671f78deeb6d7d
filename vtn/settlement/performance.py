"""Event and season performance shared by the discharge programs
(ConnectedSolutions, V2X, BYOD): average kW over the FULL event, season =
mean over ALL events called.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from vtn.settlement.intervals import KwOf, Series, window_average
from vtn.settlement.model import EventPerformance, EventRecord, EventStatus, TelemetryInterval


def discharge_kw(interval: TelemetryInterval) -> float:
    """The kW an interval earns in a discharge event.

    - the battery's own meter when present, not the site's net export, so
      curtailing solar to raise export earns nothing;
    - an unplugged car earns 0 kW whatever the meter says;
    - charging is not discharge: negative kW earns 0 (it is not netted
      against discharge in other intervals).
    """
    if interval.plugged_in is False:
        return 0.0
    kw = interval.battery_kw if interval.battery_kw is not None else interval.kw
    return max(kw, 0.0)


def event_performance(series: Series | None, event: EventRecord, *,
                      enrolled_utc: datetime | None = None, opted_out: bool = False,
                      kw_of: KwOf = discharge_kw) -> EventPerformance:
    """Average kW over the whole event; intervals with no data count 0 kW."""
    if enrolled_utc is not None and event.start_utc < enrolled_utc:
        return EventPerformance(event.event_id, 0.0, EventStatus.NOT_ENROLLED)
    if opted_out:
        return EventPerformance(event.event_id, 0.0, EventStatus.OPTED_OUT)
    if series is None:
        return EventPerformance(event.event_id, 0.0, EventStatus.NO_DATA)
    avg = window_average(series, event.start_utc, event.end_utc, kw_of)
    if avg.covered_s == 0:
        status = EventStatus.NO_DATA
    elif avg.complete:
        status = EventStatus.FULL_DATA
    else:
        status = EventStatus.PARTIAL_DATA
    return EventPerformance(event.event_id, avg.kw, status, covered_s=avg.covered_s)


def season_kw(performances: Sequence[EventPerformance], events_called: int) -> float:
    """Mean over ALL events called: an event with no performance record is 0 kW."""
    if events_called == 0:
        return 0.0
    return sum(p.kw for p in performances) / events_called
