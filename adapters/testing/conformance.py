"""The conformance kit: one scripted DR event, run against an adapter and its device.

An adapter is driven only through its public interface (apply / read /
clear); what the device actually did is judged from the device's side, the
`DevicePeer`, never from what the adapter says. Telemetry is then checked
separately: the adapter's readings must show what the device did.

Waits are bounded by `timeout_s` so a device that never obeys fails the check
instead of hanging. The only timing the kit relies on is the event window
itself: power must be off inside it and back after it.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Awaitable, Callable, Protocol

from adapters.base import Adapter, AdapterError, Charge, ChargeDelay, Discharge, Reading
from flexadr.clock import Clock, ManualClock, SystemClock, ceil_to


class DevicePeer(Protocol):
    """The device's own view of itself (its meter), not the adapter's."""

    def power_kw(self) -> float:
        """Power into the device now; < 0 while it exports."""

    def soc_pct(self) -> float:
        """State of charge now."""


class Timebase(Protocol):
    """Where the event's time comes from: the wall clock or a simulated one."""

    clock: Clock

    async def sleep(self, seconds: float) -> None: ...


class WallTime:
    """Real time: for adapters that talk to a device peer over a socket."""

    def __init__(self) -> None:
        self.clock = SystemClock()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class SimulatedTime:
    """A manual clock that moves on each sleep: for adapters with no I/O (sim)."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock

    async def sleep(self, seconds: float) -> None:
        self.clock.advance(timedelta(seconds=seconds))
        await asyncio.sleep(0)  # let the adapter's own tasks run


@dataclass(frozen=True)
class DelayScenario:
    """The car is charging; the events say: no charging for `window_s` seconds,
    `windows` times, `gap_s` apart (the device must charge in the gaps)."""
    lead_s: float = 1.0
    window_s: float = 3.0
    windows: int = 1
    gap_s: float = 2.0
    tolerance_kw: float = 0.05
    step_s: float = 0.05
    timeout_s: float = 10.0


@dataclass(frozen=True)
class DischargeScenario:
    """Export at `max_kw`, never below `min_soc_pct`.

    With `expect_floor=True` the device is set up (by the test) to reach the
    floor inside the window, so the kit also checks it stopped there.
    """
    max_kw: float
    min_soc_pct: float
    lead_s: float = 1.0
    window_s: float = 4.0
    expect_floor: bool = True
    tolerance_kw: float = 0.1
    tolerance_pct: float = 1.0
    step_s: float = 0.05
    timeout_s: float = 10.0


@dataclass(frozen=True)
class ChargeScenario:
    """Storm preparation: charge at `charge_kw` (the device's full power) up to
    `target_soc_pct` inside the window. With `expect_target=True` the device is
    set up to reach the target inside the window, and must stop there."""
    charge_kw: float
    target_soc_pct: float = 100.0
    lead_s: float = 1.0
    window_s: float = 4.0
    expect_target: bool = True
    tolerance_kw: float = 0.1
    tolerance_pct: float = 1.0
    step_s: float = 0.05
    timeout_s: float = 10.0


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str = ""


@dataclass
class Report:
    adapter: str
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def check(self, name: str, passed: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, bool(passed), detail))
        return bool(passed)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def assert_passed(self) -> None:
        if not self.passed:
            lines = [f"  {c.name}: {c.detail}" for c in self.failures()] or ["  no checks ran"]
            raise AssertionError(f"{self.adapter} failed conformance:\n" + "\n".join(lines))

    def __str__(self) -> str:
        return "\n".join(f"[{'ok' if c.passed else 'FAIL'}] {c.name} {c.detail}" for c in self.checks)


async def _wait_until(
    timebase: Timebase,
    predicate: Callable[[], Awaitable[bool]],
    timeout_s: float,
    step_s: float,
    deadline: datetime | None = None,
) -> bool:
    """Poll until predicate holds; False after timeout_s (or past `deadline`)."""
    clock = timebase.clock
    give_up = clock.now() + timedelta(seconds=timeout_s)
    if deadline is not None:
        give_up = min(give_up, deadline)
    while True:
        if await predicate():
            return True
        if clock.now() >= give_up:
            return False
        await timebase.sleep(step_s)


async def _sleep_until(timebase: Timebase, when: datetime) -> None:
    left_s = (when - timebase.clock.now()).total_seconds()
    if left_s > 0:
        await timebase.sleep(left_s)


def _window(timebase: Timebase, lead_s: float, window_s: float) -> tuple[datetime, datetime]:
    # Whole seconds: device protocols (OCPP schedules, revert timers) count in seconds.
    start = ceil_to(timebase.clock.now() + timedelta(seconds=lead_s), timedelta(seconds=1))
    return start, start + timedelta(seconds=window_s)


class _Telemetry:
    """The adapter's readings, kept so checks can compare registers over time."""

    def __init__(self, adapter: Adapter, report: Report):
        self.adapter = adapter
        self.report = report
        self.last: Reading | None = None
        self.error: AdapterError | None = None
        self.naive_seen = False

    async def read(self) -> Reading | None:
        try:
            reading = await self.adapter.read()
        except AdapterError as exc:  # a failed read is a failed check, not a crash
            self.error = exc
            return None
        if reading.at.tzinfo is None and not self.naive_seen:
            self.naive_seen = True
            self.report.check("telemetry timestamps are timezone-aware", False, f"at={reading.at!r}")
        self.last = reading
        return reading


async def _apply(adapter: Adapter, command, report: Report) -> bool:
    try:
        await adapter.apply(command)
    except AdapterError as exc:
        return report.check("adapter accepted the command", False, repr(exc))
    return report.check("adapter accepted the command", True)


async def _clear(adapter: Adapter, report: Report) -> None:
    try:
        await adapter.clear()
    except AdapterError as exc:
        report.check("adapter cleared the command", False, repr(exc))
    else:
        report.check("adapter cleared the command", True)


async def _held_until(
    timebase: Timebase, until: datetime, step_s: float, ok: Callable[[], bool]
) -> tuple[bool, int]:
    """Sample the device every step until `until`; (all samples ok, sample count)."""
    samples = 0
    good = True
    while timebase.clock.now() + timedelta(seconds=step_s) < until:
        samples += 1
        good = good and ok()
        await timebase.sleep(step_s)
    return good, samples


async def run_charge_delay(
    adapter: Adapter, peer: DevicePeer, timebase: Timebase, scenario: DelayScenario = DelayScenario()
) -> Report:
    """Charging car -> delay window(s) -> check it stopped, stayed off, came back each time.

    Every window is applied before the first starts, as a VEN does with the
    events it has accepted, so an adapter that keeps only its last command fails.
    """
    s = scenario
    report = Report(type(adapter).__name__)
    telemetry = _Telemetry(adapter, report)

    async def charging() -> bool:
        return peer.power_kw() > s.tolerance_kw

    if not report.check("device charging before the event",
                        await _wait_until(timebase, charging, s.timeout_s, s.step_s),
                        f"power_kw={peer.power_kw():.3f}"):
        return report
    first_start, first_end = _window(timebase, s.lead_s, s.window_s)
    every = timedelta(seconds=s.window_s + s.gap_s)
    windows = [(first_start + i * every, first_end + i * every) for i in range(s.windows)]
    for start, end in windows:
        if not await _apply(adapter, ChargeDelay(start, end), report):
            return report
    for i, (start, end) in enumerate(windows):
        label = f" (window {i + 1})" if s.windows > 1 else ""
        next_start = windows[i + 1][0] if i + 1 < len(windows) else None
        await _check_one_delay(report, telemetry, peer, timebase, s, start, end, next_start, label)
    await _clear(adapter, report)
    return report


async def _check_one_delay(report: Report, telemetry: _Telemetry, peer: DevicePeer, timebase: Timebase,
                           s: DelayScenario, start: datetime, end: datetime, next_start: datetime | None,
                           label: str) -> None:
    async def charging() -> bool:
        return peer.power_kw() > s.tolerance_kw

    async def idle() -> bool:
        return abs(peer.power_kw()) <= s.tolerance_kw

    kept, _ = await _held_until(timebase, start, s.step_s, lambda: peer.power_kw() > s.tolerance_kw)
    report.check("device kept charging until the window" + label, kept)
    await _sleep_until(timebase, start)

    stopped = await _wait_until(timebase, idle, s.timeout_s, s.step_s, deadline=end)
    report.check("device stopped charging in the window" + label, stopped, f"power_kw={peer.power_kw():.3f}")

    async def reported_idle() -> bool:
        r = await telemetry.read()
        return r is not None and r.online and abs(r.kw) <= s.tolerance_kw

    seen = await _wait_until(timebase, reported_idle, s.timeout_s, s.step_s, deadline=end)
    report.check("telemetry showed ~0 kW in the window" + label, seen,
                 f"last={telemetry.last} error={telemetry.error!r}")
    first = telemetry.last
    held, samples = await _held_until(timebase, end, s.step_s,
                                      lambda: abs(peer.power_kw()) <= s.tolerance_kw)
    report.check("device stayed off to the end of the window" + label, stopped and held and samples > 0,
                 f"{samples} samples")
    last = await telemetry.read()
    if seen and first is not None and last is not None:
        grew_kwh = last.kwh_imported - first.kwh_imported
        report.check("imported energy flat in the window" + label,
                     grew_kwh <= s.tolerance_kw * s.window_s / 3600, f"grew {grew_kwh:.6f} kWh")

    await _sleep_until(timebase, end)
    report.check("device resumed charging after the window" + label,
                 await _wait_until(timebase, charging, s.timeout_s, s.step_s, deadline=next_start),
                 f"power_kw={peer.power_kw():.3f}")

    async def reported_charging() -> bool:
        r = await telemetry.read()
        return r is not None and r.kw > s.tolerance_kw

    report.check("telemetry showed charging after the window" + label,
                 await _wait_until(timebase, reported_charging, s.timeout_s, s.step_s, deadline=next_start),
                 f"last={telemetry.last} error={telemetry.error!r}")


async def run_discharge(
    adapter: Adapter, peer: DevicePeer, timebase: Timebase, scenario: DischargeScenario
) -> Report:
    """Discharge window -> export at the commanded power, stop at the floor, stop at the end."""
    s = scenario
    report = Report(type(adapter).__name__)
    telemetry = _Telemetry(adapter, report)
    floor = s.min_soc_pct
    if not report.check("device above the floor before the event", peer.soc_pct() > floor + s.tolerance_pct,
                        f"soc_pct={peer.soc_pct():.2f} floor={floor}"):
        return report
    start, end = _window(timebase, s.lead_s, s.window_s)
    first = await telemetry.read()
    if not await _apply(adapter, Discharge(start, end, s.max_kw, floor), report):
        return report

    kept, _ = await _held_until(timebase, start, s.step_s, lambda: peer.power_kw() > -s.tolerance_kw)
    report.check("device did not export before the window", kept)
    await _sleep_until(timebase, start)

    lowest_soc = [peer.soc_pct()]

    async def exporting_at_command() -> bool:
        lowest_soc[0] = min(lowest_soc[0], peer.soc_pct())
        return abs(peer.power_kw() + s.max_kw) <= s.tolerance_kw

    at_power = await _wait_until(timebase, exporting_at_command, s.timeout_s, s.step_s, deadline=end)
    report.check("device exported at the commanded power", at_power,
                 f"power_kw={peer.power_kw():.3f} commanded={-s.max_kw}")

    async def reported_export() -> bool:
        lowest_soc[0] = min(lowest_soc[0], peer.soc_pct())
        r = await telemetry.read()
        return r is not None and r.online and r.kw < -s.tolerance_kw

    seen = await _wait_until(timebase, reported_export, s.timeout_s, s.step_s, deadline=end)
    report.check("telemetry showed the export", seen, f"last={telemetry.last} error={telemetry.error!r}")

    if s.expect_floor:
        async def stopped() -> bool:
            lowest_soc[0] = min(lowest_soc[0], peer.soc_pct())
            return peer.power_kw() > -s.tolerance_kw

        # The window itself bounds this wait: the floor must come before the end.
        halted = await _wait_until(timebase, stopped, s.window_s, s.step_s, deadline=end)
        soc = peer.soc_pct()
        in_window = timebase.clock.now() < end
        report.check("device stopped exporting at the floor",
                     halted and in_window and abs(soc - floor) <= s.tolerance_pct,
                     f"soc_pct={soc:.2f} floor={floor} before_end={in_window}")

    def track() -> bool:
        lowest_soc[0] = min(lowest_soc[0], peer.soc_pct())
        return True

    await _held_until(timebase, end, s.step_s, track)
    await _sleep_until(timebase, end)

    async def not_exporting() -> bool:
        lowest_soc[0] = min(lowest_soc[0], peer.soc_pct())
        return peer.power_kw() > -s.tolerance_kw

    report.check("device stopped exporting after the window",
                 await _wait_until(timebase, not_exporting, s.timeout_s, s.step_s),
                 f"power_kw={peer.power_kw():.3f}")
    report.check("floor held", lowest_soc[0] >= floor - s.tolerance_pct,
                 f"lowest soc_pct={lowest_soc[0]:.2f} floor={floor}")

    async def reported_soc() -> bool:
        r = await telemetry.read()
        return r is not None and abs(r.soc_pct - peer.soc_pct()) <= s.tolerance_pct

    report.check("telemetry state of charge matches the device",
                 await _wait_until(timebase, reported_soc, s.timeout_s, s.step_s),
                 f"last={telemetry.last} device soc_pct={peer.soc_pct():.2f}")
    last = telemetry.last
    if first is not None and last is not None:
        report.check("exported energy register grew", last.kwh_exported > first.kwh_exported,
                     f"{first.kwh_exported:.4f} -> {last.kwh_exported:.4f} kWh")
    await _clear(adapter, report)
    return report


async def run_charge(
    adapter: Adapter, peer: DevicePeer, timebase: Timebase, scenario: ChargeScenario
) -> Report:
    """Idle or slow device -> charge window -> full power, stop at the target, not beyond."""
    s = scenario
    report = Report(type(adapter).__name__)
    telemetry = _Telemetry(adapter, report)
    target = s.target_soc_pct
    if not report.check("device below the target before the event", peer.soc_pct() < target - s.tolerance_pct,
                        f"soc_pct={peer.soc_pct():.2f} target={target}"):
        return report
    start, end = _window(timebase, s.lead_s, s.window_s)
    if not await _apply(adapter, Charge(start, end, target), report):
        return report
    await _sleep_until(timebase, start)
    highest = [peer.soc_pct()]

    def track() -> float:
        highest[0] = max(highest[0], peer.soc_pct())
        return peer.power_kw()

    async def full_power() -> bool:
        return abs(track() - s.charge_kw) <= s.tolerance_kw

    report.check("device charged at full power in the window",
                 await _wait_until(timebase, full_power, s.timeout_s, s.step_s, deadline=end),
                 f"power_kw={peer.power_kw():.3f} expected={s.charge_kw}")

    async def reported_charging() -> bool:
        track()
        r = await telemetry.read()
        return r is not None and r.online and r.kw > s.tolerance_kw

    report.check("telemetry showed the charging",
                 await _wait_until(timebase, reported_charging, s.timeout_s, s.step_s, deadline=end),
                 f"last={telemetry.last} error={telemetry.error!r}")
    if s.expect_target:
        async def stopped() -> bool:
            return track() <= s.tolerance_kw

        halted = await _wait_until(timebase, stopped, s.window_s, s.step_s, deadline=end)
        soc = peer.soc_pct()
        report.check("device stopped charging at the target",
                     halted and timebase.clock.now() < end and abs(soc - target) <= s.tolerance_pct,
                     f"soc_pct={soc:.2f} target={target}")
    await _held_until(timebase, end, s.step_s, lambda: track() is not None)
    report.check("target not overshot", highest[0] <= target + s.tolerance_pct,
                 f"highest soc_pct={highest[0]:.2f} target={target}")
    await _clear(adapter, report)
    return report
