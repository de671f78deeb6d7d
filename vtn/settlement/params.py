"""Per-program settlement parameters, with the published figures of
../shared/PROGRAMS.md as defaults.

Kept here (not in schedules/) on purpose: settlement needs rates, caps and
thresholds that the planner does not; when the program files grow these
fields, `PARAMS` should be built from them instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time
from zoneinfo import ZoneInfo

from vtn.settlement.model import RateClass


@dataclass(frozen=True)
class RateEntry:
    """Rates in force for installations (and unlocked seasons) from `effective_from`."""
    effective_from: date
    usd_per_kw: dict[RateClass, float]


@dataclass(frozen=True)
class DischargeParams:
    """Program 1, ConnectedSolutions: pay for average kW over full events."""
    rates: tuple[RateEntry, ...]
    rate_lock_years: int = 5
    lifetime_cap_usd: float = 25_000.0
    max_inverter_kw: float = 50.0
    min_events: int = 30
    max_events: int = 60
    max_targeted_events: int = 8       # commercial "targeted" option


@dataclass(frozen=True)
class ManagedChargingParams:
    """Program 2, EV managed charging (charge delay)."""
    baseline_days: int = 10            # most recent non-event, non-holiday weekdays
    baseline_lookback_days: int = 60   # how far back to look for them
    opt_out_removal_threshold: int = 12   # MORE than this: may be removed, season payment lost
    offline_events_notify: int = 3     # offline for MORE than this many consecutive events
    reconnect_days: int = 7            # after the notice, else unenrolled
    enrolment_payment_usd: float = 50.0
    annual_payment_usd: float = 50.0
    annual_payment_month: int = 12
    max_events: int = 60


@dataclass(frozen=True)
class CleanPeakWindow:
    """Daily window for local dates from `first` to `last` (month, day), inclusive."""
    season: str
    first: tuple[int, int]
    last: tuple[int, int]
    start: time
    end: time


@dataclass(frozen=True)
class V2XParams:
    """Program 3, MassCEC V2X demonstration."""
    clean_peak_windows: tuple[CleanPeakWindow, ...]
    cpec_usd_per_mwh: float = 65.0
    baseline_days: int = 10            # for charging avoided: prior non-event days
    baseline_lookback_days: int = 30


@dataclass(frozen=True)
class ByodParams:
    """Program 4, bring-your-own-device VPP (policy template)."""
    max_events_per_month: int = 8      # the program chooses 5-8
    min_soc_pct: float = 20.0
    cycle_cap_per_year: float = 50.0
    flex_alert_premium_usd_per_kwh: float = 2.00
    upfront_usd_per_kw: float = 850.0


@dataclass(frozen=True)
class ProgramParams:
    program: str
    timezone: ZoneInfo
    settlement: DischargeParams | ManagedChargingParams | V2XParams | ByodParams
    # Intervals that overlap no event are an input error unless the program
    # needs non-event data (baselines, Clean Peak every day, yearly cycles).
    event_data_only: bool
    # Discharge programs count positive kW as discharge; the store keeps power
    # INTO the device (charging > 0), so its readings are negated for them.
    discharge: bool = True


NEW_YORK = ZoneInfo("America/New_York")

CONNECTED_SOLUTIONS_RATES = (
    RateEntry(date(2024, 1, 1), {RateClass.RESIDENTIAL: 275.0, RateClass.COMMERCIAL: 200.0}),
)

CLEAN_PEAK_WINDOWS = (
    CleanPeakWindow("spring", (3, 1), (5, 14), time(17), time(21)),
    CleanPeakWindow("summer", (5, 15), (9, 14), time(16), time(20)),
    CleanPeakWindow("fall", (9, 15), (11, 30), time(16), time(20)),
    # winter wraps the new year: Dec 1 - Feb 28/29
    CleanPeakWindow("winter", (12, 1), (2, 29), time(16), time(20)),
)

PARAMS: dict[str, ProgramParams] = {
    "connected_solutions": ProgramParams(
        "connected_solutions", NEW_YORK, DischargeParams(rates=CONNECTED_SOLUTIONS_RATES),
        event_data_only=True),
    "managed_charging": ProgramParams(
        "managed_charging", NEW_YORK, ManagedChargingParams(), event_data_only=False,
        discharge=False),
    "v2x_demo": ProgramParams(
        "v2x_demo", NEW_YORK, V2XParams(clean_peak_windows=CLEAN_PEAK_WINDOWS),
        event_data_only=False),
    "byod_vpp": ProgramParams(
        "byod_vpp", NEW_YORK, ByodParams(), event_data_only=False),
}


def params_for(program: str) -> ProgramParams:
    try:
        return PARAMS[program]
    except KeyError:
        raise ValueError(f"unknown program {program!r}; known: {', '.join(sorted(PARAMS))}") from None
