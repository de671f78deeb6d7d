"""A SunSpec battery inverter served over Modbus TCP by pymodbus.

The register map is built from pysunspec2's official model definitions:
model 1 (common), 701 (DER AC measurement: W, TotWhInj, TotWhAbs),
124 (storage controls) and 713 (DER storage capacity: SoC), from the
standard base address 40000 with the 'SunS' marker and the end model.

It behaves like the storage controls say (the interpretation the `sunspec`
adapter targets, documented in docs/adapters.md):
- StorCtl_Mod bit 1 (DISCHARGE): discharge at OutWRte % of WChaMax, never
  below MinRsvPct;
- StorCtl_Mod bit 0 (CHARGE): charge at no more than InWRte % of WChaMax;
  with ChaGriSet = GRID and InWRte > 0, charge from the grid at that rate to full;
- neither: the owner's normal mode, here charging to its target;
- InOutWRte_RvrtTms > 0: the control reverts to neither that many seconds
  after it was written, so a vanished controller cannot strand the battery.
Writes to read-only points answer ILLEGAL_ADDRESS, out-of-range values
ILLEGAL_VALUE, like a real inverter's Modbus exceptions.

The physics runs up to every request before it is answered or applied, so a
read returns the energy that really flowed by then and a control takes effect
the moment it is written.

Fault switches: `muted` (requests hang, the client times out) and
`refuse_writes` (every write answers SLAVE_FAILURE / device failure).
"""
from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any

import sunspec2.device as ssdev
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from adapters.testing.ev_physics import BatteryPhysics
from flexadr.clock import Clock, SystemClock

BASE_ADDR = 40000
SUNS = b"SunS"
END_MODEL = b"\xff\xff\x00\x00"
CHARGE_BIT, DISCHARGE_BIT = 0x1, 0x2
PV, GRID = 0, 1  # ChaGriSet


def build_device(max_w: float, capacity_wh: float) -> ssdev.Device:
    """A pysunspec2 Device with the models this battery implements, scale factors set."""
    device = ssdev.Device()
    common = ssdev.Model(1)
    common.Mn.value, common.Md.value, common.SN.value = "flexadr", "SimStorage", "SIM-0001"
    common.Vr.value, common.DA.value = "1.0", 1
    meter = ssdev.Model(701)
    meter.W_SF.value, meter.TotWh_SF.value = 0, 0
    meter.W.value, meter.TotWhInj.value, meter.TotWhAbs.value = 0, 0, 0
    storage = ssdev.Model(124)
    storage.WChaMax_SF.value, storage.MinRsvPct_SF.value = 0, -1
    storage.ChaState_SF.value, storage.InOutWRte_SF.value = -1, -1
    storage.WChaMax.value = int(max_w)
    storage.StorCtl_Mod.value = 0
    storage.MinRsvPct.cvalue = 10.0
    storage.OutWRte.cvalue, storage.InWRte.cvalue = 100.0, 100.0
    storage.InOutWRte_RvrtTms.value = 0
    storage.ChaGriSet.value = PV
    storage.ChaState.value = 0
    capacity = ssdev.Model(713)
    capacity.WH_SF.value, capacity.Pct_SF.value = 0, -1
    capacity.WHRtg.value = int(capacity_wh)
    for model in (common, meter, storage, capacity):
        device.add_model(model)
    return device


def _registers(data: bytes) -> list[int]:
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


def _bytes(registers: list[int]) -> bytes:
    return b"".join(r.to_bytes(2, "big") for r in registers)


class SunSpecBatterySim:
    def __init__(self, battery: BatteryPhysics, clock: Clock | None = None, *,
                 max_w: float | None = None, slave_id: int = 1, port: int = 0, tick_s: float = 0.05):
        self.battery = battery
        self.clock = clock or SystemClock()
        self.slave_id = slave_id
        self.tick_s = tick_s
        max_w = max_w or max(battery.max_charge_kw, battery.max_discharge_kw) * 1000
        self.device = build_device(max_w, battery.capacity_kwh * 1000)
        self.storage = self.device.models[124][0]
        self.meter = self.device.models[701][0]
        self.capacity = self.device.models[713][0]
        self.muted = False
        self.refuse_writes = False
        self.writes: list[tuple[str, Any]] = []  # (point, value) in write order: what the controller did
        self._revert_at: datetime | None = None
        self._layout = self._point_layout()
        self._sync_measurements()
        image = self.image()
        self._server = ModbusTcpServer(
            SimDevice(id=slave_id, simdata=SimData(BASE_ADDR, values=_registers(image),
                                                   datatype=DataType.REGISTERS),
                      action=self._on_request),
            address=("127.0.0.1", port),
        )
        self._tasks: list[asyncio.Task] = []
        self.port = 0

    # --- DevicePeer -------------------------------------------------------------
    def power_kw(self) -> float:
        return self.battery.kw

    def soc_pct(self) -> float:
        return self.battery.soc_pct

    # --- register image ---------------------------------------------------------
    def image(self) -> bytes:
        return SUNS + self.device.get_mb() + END_MODEL

    def _point_layout(self) -> list[tuple[int, int, Any]]:
        """(register address, length, point) for every point of every model."""
        layout = []
        addr = BASE_ADDR + 2
        for model in self.device.model_list:
            for point in model.points.values():
                layout.append((addr + point.offset, point.len, point))
            addr += model.len
        return layout

    # --- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        await self._server.serve_forever(background=True)
        self.port = self._server.transport.sockets[0].getsockname()[1]
        self._tasks = [asyncio.ensure_future(self._physics())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._server.shutdown()

    # --- Modbus requests ------------------------------------------------------------
    async def _on_request(self, function_code: int, start_address: int, address: int, count: int,
                          registers: list[int], set_values: list[int] | None) -> ExcCodes | None:
        if self.muted:
            await asyncio.Event().wait()  # never answer; cancelled at shutdown
        self.advance(self.clock.now())
        if set_values:
            answer = self._write(address, list(set_values), registers, start_address)
            self.advance(self.clock.now())
            return answer
        # Serve reads from the live model so measurements are current.
        registers[:] = _registers(self.image())
        return None

    def _write(self, address: int, values: list[int], registers: list[int], start_address: int) -> ExcCodes | None:
        if self.refuse_writes:
            return ExcCodes.DEVICE_FAILURE
        end = address + len(values)
        touched = [(a, n, p) for a, n, p in self._layout if a < end and a + n > address]
        if any(p.pdef.get("access") != "RW" or a < address or a + n > end for a, n, p in touched):
            return ExcCodes.ILLEGAL_ADDRESS  # read-only point, or only part of a point
        data = _bytes(values)
        new_values = {}
        for a, n, point in touched:
            point_data = data[(a - address) * 2:(a - address + n) * 2]
            new_values[point] = point.info.data_to(point_data)
        if not self._valid(new_values):
            return ExcCodes.ILLEGAL_VALUE
        for point, value in new_values.items():
            point.value = value
            self.writes.append((point.pdef["name"], point.cvalue))
        if any(p.pdef["name"] in ("StorCtl_Mod", "InOutWRte_RvrtTms") for p in new_values):
            self._arm_revert()
        registers[:] = _registers(self.image())
        return None

    def _valid(self, new_values: dict[Any, Any]) -> bool:
        for point, raw in new_values.items():
            name = point.pdef["name"]
            sf = {"MinRsvPct": -1, "OutWRte": -1, "InWRte": -1}.get(name)
            if sf is not None and not 0 <= raw * 10 ** sf <= 100:
                return False
        return True

    def _arm_revert(self) -> None:
        timeout_s = self.storage.InOutWRte_RvrtTms.value or 0
        control = self.storage.StorCtl_Mod.value or 0
        self._revert_at = self.clock.now() + timedelta(seconds=timeout_s) if control and timeout_s else None

    # --- the battery's own behaviour ----------------------------------------------------
    def setpoint_kw(self) -> tuple[float | None, float, float | None]:
        """(setpoint, floor, target) for BatteryPhysics from the storage controls."""
        s = self.storage
        control = s.StorCtl_Mod.value or 0
        max_kw = s.WChaMax.cvalue / 1000
        floor = s.MinRsvPct.cvalue or 0.0
        if control & DISCHARGE_BIT:
            return -max_kw * s.OutWRte.cvalue / 100, floor, None
        if control & CHARGE_BIT:
            rate_kw = max_kw * s.InWRte.cvalue / 100
            if s.ChaGriSet.value == GRID and rate_kw > 0:
                return rate_kw, floor, 100.0  # charging from the grid allowed: charge to full
            return rate_kw, floor, None  # a cap on the owner's own charging
        return None, floor, None

    def advance(self, now: datetime) -> None:
        """Run the physics to `now`; the revert timer fires on its own time."""
        if self._revert_at is not None and now >= self._revert_at:
            self._step(self._revert_at)
            self.storage.StorCtl_Mod.value, self._revert_at = 0, None
        self._step(now)

    def _step(self, now: datetime) -> None:
        setpoint, floor, target = self.setpoint_kw()
        self.battery.step(now, setpoint, floor, target)
        self._sync_measurements()

    def set_plugged_in(self, plugged_in: bool) -> None:
        """Connect the battery to the house (or not): idle while disconnected."""
        self.advance(self.clock.now())
        self.battery.plugged_in = plugged_in
        self.advance(self.clock.now())

    async def _physics(self) -> None:
        while True:
            self.advance(self.clock.now())
            await asyncio.sleep(self.tick_s)

    def _sync_measurements(self) -> None:
        b = self.battery
        self.meter.W.value = round(-b.kw * 1000)  # DER convention: + is injection
        self.meter.TotWhInj.value = round(b.kwh_exported * 1000)
        self.meter.TotWhAbs.value = round(b.kwh_imported * 1000)
        self.storage.ChaState.cvalue = b.soc_pct
        self.storage.ChaSt.value = 3 if b.kw < 0 else 4 if b.kw > 0 else 6
        self.capacity.SoC.cvalue = b.soc_pct
