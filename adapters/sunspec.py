"""`sunspec`: battery inverters over Modbus TCP, through pysunspec2's SunSpec models.

Required models: 1 (common) and 124 (basic storage controls). Used when
present: 701 (DER AC measurement: W, TotWhInj, TotWhAbs) for power and energy,
713 (DER storage capacity: SoC) for state of charge, else 124's ChaState.

Commands (Modbus has no schedules, so the adapter re-syncs the controls at
every command's start and end; the device's revert timer makes it safe if the
VEN goes away mid-event):
- Discharge: at the window start write MinRsvPct = floor, OutWRte = max_kw as
  % of WChaMax, InOutWRte_RvrtTms = seconds left in the window, and only then
  StorCtl_Mod = DISCHARGE; at the end StorCtl_Mod = 0.
- ChargeDelay: the same with StorCtl_Mod = CHARGE and InWRte = 0 %: the
  battery may not charge in the window.
- Charge (storm preparation, to full only): InWRte = 100 %, ChaGriSet = GRID,
  StorCtl_Mod = CHARGE; the owner's ChaGriSet is put back afterwards.

pysunspec2's client is blocking sockets, so every exchange runs in the adapter's
own worker thread, one at a time, bounded by `timeout_s`: never queued behind the
process's other thread work (a VTN mailing a hundred notices shares the default
executor), which would make a device that answers look timed out.

Config: host (default 127.0.0.1), port (502), slave_id (1), timeout_s (3).
"""
from __future__ import annotations

import asyncio
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Mapping, TypeVar

import sunspec2.modbus.client as ss_client
import sunspec2.modbus.modbus as ss_modbus

from adapters._schedule import hold_until_edges
from adapters.base import (
    Adapter,
    AdapterError,
    Capability,
    Charge,
    ChargeDelay,
    Command,
    CommandRefused,
    DeviceDisconnected,
    DeviceTimeout,
    Discharge,
    Reading,
)
from flexadr.clock import Clock

CHARGE_BIT, DISCHARGE_BIT = 0x1, 0x2
GRID = 1  # ChaGriSet: charging from the grid allowed
T = TypeVar("T")


def _typed(exc: Exception) -> AdapterError:
    """pysunspec2 / socket errors -> our typed errors."""
    if isinstance(exc, ss_modbus.ModbusClientException):
        return CommandRefused(f"device answered with a Modbus exception: {exc}")
    if isinstance(exc, ss_modbus.ModbusClientTimeout):
        # pysunspec2 says "Response timeout" when recv() returns b'': the peer closed.
        if "Response timeout" in str(exc):
            return DeviceDisconnected(f"device closed the connection: {exc}")
        return DeviceTimeout(f"device did not answer: {exc}")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return DeviceTimeout(f"device did not answer: {exc}")
    if isinstance(exc, (ss_modbus.ModbusClientError, ss_client.SunSpecModbusClientError, OSError)):
        return DeviceDisconnected(f"device unreachable: {exc}")
    return AdapterError(f"unexpected device error: {exc!r}")


class SunSpecAdapter(Adapter):
    capabilities = frozenset({Capability.CHARGE_DELAY, Capability.DISCHARGE, Capability.TELEMETRY})

    def __init__(self, config: Mapping[str, Any], clock: Clock):
        super().__init__(config, clock)
        self.host = self.config.get("host", "127.0.0.1")
        self.port = int(self.config.get("port", 502))
        self.slave_id = int(self.config.get("slave_id", 1))
        self.timeout_s = float(self.config.get("timeout_s", 3))
        self._device: ss_client.SunSpecModbusClientDeviceTCP | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sunspec-{self.port}")
        self._lock = asyncio.Lock()
        self._window_tasks: list[asyncio.Task] = []
        self._commands: list[Command] = []
        self._max_w = 0.0
        self._grid_setting_before: int | None = None  # ChaGriSet to restore after a Charge

    # --- the blocking edge ------------------------------------------------------
    async def _exchange(self, work: Callable[[ss_client.SunSpecModbusClientDeviceTCP], T]) -> T:
        """Run one blocking exchange in a thread; reconnect next time after any failure."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            try:
                # Connecting scans the models: several requests, each bounded by timeout_s.
                device = self._device or await asyncio.wait_for(
                    loop.run_in_executor(self._worker, self._connect), 4 * self.timeout_s)
                self._device = device
                return await asyncio.wait_for(loop.run_in_executor(self._worker, work, device),
                                              self.timeout_s + 1)
            except AdapterError:
                self._drop()
                raise
            except asyncio.TimeoutError:
                self._drop()
                raise DeviceTimeout(f"no answer from {self.host}:{self.port} within {self.timeout_s}s") from None
            except Exception as exc:
                self._drop()
                raise _typed(exc) from exc

    def _connect(self) -> ss_client.SunSpecModbusClientDeviceTCP:
        device = ss_client.SunSpecModbusClientDeviceTCP(
            slave_id=self.slave_id, ipaddr=self.host, ipport=self.port, timeout=self.timeout_s)
        device.connect()
        try:
            device.scan()
        except Exception:
            device.disconnect()
            raise
        missing = {1, 124} - set(device.models)
        if missing:
            device.disconnect()
            raise CommandRefused(f"not a SunSpec storage device: models {sorted(missing)} missing")
        return device

    def _drop(self) -> None:
        if self._device is not None:
            self._device.disconnect()
            self._device = None

    # --- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        await self._exchange(lambda device: None)

    async def stop(self) -> None:
        self._cancel_window()
        async with self._lock:
            self._drop()
        self._worker.shutdown(wait=False)

    # --- commands -------------------------------------------------------------------
    async def apply(self, command: Command) -> None:
        if not isinstance(command, (ChargeDelay, Discharge, Charge)):
            raise CommandRefused(f"unsupported command {command!r}")
        if isinstance(command, Charge) and command.target_soc_pct < 100:
            # Model 124 has no "stop at this level" for charging; only full can be promised.
            raise CommandRefused(f"SunSpec 124 can only charge to full, not to {command.target_soc_pct} %")
        # Check reach and rating now, so a bad command fails in the caller's hands.
        self._max_w = await self._exchange(self._max_charge_w)
        if isinstance(command, Discharge) and command.max_kw * 1000 > self._max_w * 1.0001:
            raise CommandRefused(f"{command.max_kw} kW is above the inverter's {self._max_w / 1000} kW")
        self._window_tasks = await hold_until_edges(command, self._commands, self._window_tasks,
                                                self.clock.now, self._sync)

    def _active(self) -> Command | None:
        """The command in force now; the latest applied wins an overlap."""
        now = self.clock.now()
        self._commands = [c for c in self._commands if c.end > now]
        active = [c for c in self._commands if c.start <= now]
        return active[-1] if active else None

    async def _sync(self) -> None:
        """Make the inverter's controls match the command in force (or none) now.

        Runs at every command edge, so several pending events each get their turn.
        """
        command = self._active()
        if command is None:
            await self._exchange(self._write_control_off)
        else:
            await self._exchange(lambda device: self._start_control(device, command, self._max_w))

    async def clear(self) -> None:
        self._cancel_window()
        self._commands = []
        await self._exchange(self._write_control_off)

    def _cancel_window(self) -> None:
        for task in self._window_tasks:
            task.cancel()
        self._window_tasks = []

    @staticmethod
    def _max_charge_w(device: ss_client.SunSpecModbusClientDeviceTCP) -> float:
        storage = device.models[124][0]
        storage.read()
        return float(storage.WChaMax.cvalue)

    def _start_control(self, device: ss_client.SunSpecModbusClientDeviceTCP, command: Command,
                       max_w: float) -> None:
        storage = device.models[124][0]
        left_s = max(1, round((command.end - self.clock.now()).total_seconds()))
        if isinstance(command, Discharge):
            settings = [("MinRsvPct", command.min_soc_pct),
                        ("OutWRte", min(100.0, command.max_kw * 1000 / max_w * 100))]
            mode = DISCHARGE_BIT
        elif isinstance(command, Charge):
            if self._grid_setting_before is None:
                self._grid_setting_before = storage.ChaGriSet.value
            settings, mode = [("InWRte", 100.0), ("ChaGriSet", GRID)], CHARGE_BIT
        else:
            settings, mode = [("InWRte", min(100.0, command.max_kw * 1000 / max_w * 100))], CHARGE_BIT
        # Limits first, the mode last: the battery never runs on the previous limits.
        for name, value in settings:
            point = getattr(storage, name)
            if name == "ChaGriSet":
                point.value = value  # an enum: no scale factor
            else:
                point.cvalue = value
            point.write()
        storage.InOutWRte_RvrtTms.value = left_s
        storage.InOutWRte_RvrtTms.write()
        storage.StorCtl_Mod.value = mode
        storage.StorCtl_Mod.write()

    def _write_control_off(self, device: ss_client.SunSpecModbusClientDeviceTCP) -> None:
        storage = device.models[124][0]
        storage.StorCtl_Mod.value = 0
        storage.StorCtl_Mod.write()
        if self._grid_setting_before is not None:
            # Grid charging was ours for the storm; the owner's setting comes back.
            storage.ChaGriSet.value = self._grid_setting_before
            storage.ChaGriSet.write()
            self._grid_setting_before = None

    # --- telemetry -------------------------------------------------------------------
    async def read(self) -> Reading:
        values = await self._exchange(self._read_values)
        return Reading(plugged_in=True, online=True, **values)

    def _read_values(self, device: ss_client.SunSpecModbusClientDeviceTCP) -> dict[str, Any]:
        storage = device.models[124][0]
        storage.read()
        soc_pct = storage.ChaState.cvalue
        if 713 in device.models:
            capacity = device.models[713][0]
            capacity.read()
            soc_pct = capacity.SoC.cvalue if capacity.SoC.cvalue is not None else soc_pct
        kw = kwh_exported = kwh_imported = 0.0
        at = self.clock.now()
        if 701 in device.models:
            meter = device.models[701][0]
            meter.read()
            # When the device answered (it reads its meter as it answers), not when the
            # event loop got back to us: under load that is late by its lag.
            at = self.clock.now()
            kw = -(meter.W.cvalue or 0) / 1000  # DER sign: + is injection; ours: + is into the device
            kwh_exported = (meter.TotWhInj.cvalue or 0) / 1000
            kwh_imported = (meter.TotWhAbs.cvalue or 0) / 1000
        return {"at": at, "kw": kw, "kwh_imported": kwh_imported, "kwh_exported": kwh_exported,
                "soc_pct": float(soc_pct or 0.0)}

