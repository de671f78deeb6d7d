"""Conformance kit for adapters: run `run_charge_delay` / `run_discharge` against
your adapter and a peer that reports what the device really did.

    report = await run_charge_delay(adapter, peer, WallTime(), DelayScenario())
    report.assert_passed()
"""
from adapters.testing.conformance import (  # noqa: F401
    ChargeScenario,
    Check,
    DelayScenario,
    DevicePeer,
    DischargeScenario,
    Report,
    SimulatedTime,
    Timebase,
    WallTime,
    run_charge,
    run_charge_delay,
    run_discharge,
)
from adapters.testing.sim_peer import SimPeer  # noqa: F401
