"""Run a device simulator on its own, for demos: a VEN's adapter then talks to it.

    python -m adapters.testing.serve ocpp16 --url ws://127.0.0.1:9016/CP-1
    python -m adapters.testing.serve ocpp2 --url ws://127.0.0.1:9021/CS-1 --version 2.1
    python -m adapters.testing.serve sunspec --port 1502

OCPP chargers dial in to the VEN (start the VEN first; the charger retries);
the SunSpec inverter listens. Prints the device's own power and state of
charge every `--every-s` seconds until interrupted.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib

from adapters.testing.ev_physics import BatteryPhysics
from adapters.testing.ocpp2_charger import Ocpp2ChargerSim
from adapters.testing.ocpp16_charger import Ocpp16ChargerSim
from adapters.testing.sunspec_battery import SunSpecBatterySim


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m adapters.testing.serve", description=__doc__.split("\n")[0])
    parser.add_argument("device", choices=["ocpp16", "ocpp2", "sunspec"])
    parser.add_argument("--url", help="the VEN's OCPP endpoint, ending in the charge point id")
    parser.add_argument("--version", default="2.1", choices=["2.0.1", "2.1"])
    parser.add_argument("--port", type=int, default=1502, help="SunSpec Modbus TCP port (127.0.0.1)")
    parser.add_argument("--soc-pct", type=float, default=50.0)
    parser.add_argument("--capacity-kwh", type=float, default=60.0)
    parser.add_argument("--max-kw", type=float, default=7.2)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--every-s", type=float, default=5.0)
    return parser


def _device(args: argparse.Namespace):
    battery = BatteryPhysics(capacity_kwh=args.capacity_kwh, soc_pct=args.soc_pct, max_charge_kw=args.max_kw,
                             max_discharge_kw=args.max_kw, time_scale=args.time_scale,
                             charge_target_pct=90.0 if args.device != "sunspec" else None)
    if args.device == "sunspec":
        return SunSpecBatterySim(battery, port=args.port)
    if not args.url:
        raise SystemExit("--url is required for OCPP chargers")
    if args.device == "ocpp16":
        return Ocpp16ChargerSim(args.url, battery)
    return Ocpp2ChargerSim(args.url, battery, version=args.version)


async def _start_with_retry(device) -> None:
    while True:
        try:
            await device.start()
            return
        except OSError as exc:  # the VEN is not listening yet
            print(f"waiting for the VEN: {exc}")
            await asyncio.sleep(2)


async def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    device = _device(args)
    await _start_with_retry(device)
    try:
        while True:
            print(f"power_kw={device.power_kw():+.2f} soc_pct={device.soc_pct():.1f}", flush=True)
            await asyncio.sleep(args.every_s)
    finally:
        await device.stop()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
