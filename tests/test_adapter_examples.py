"""The example VEN configs in examples/devices build their adapters, which talk to the simulators."""
from __future__ import annotations

import asyncio
import shutil
import tomllib
from pathlib import Path

import pytest

from adapters import registry
from adapters.testing.ev_physics import BatteryPhysics
from adapters.testing.ocpp16_charger import Ocpp16ChargerSim
from adapters.testing.sunspec_battery import SunSpecBatterySim
from flexadr.clock import SystemClock

pytestmark = pytest.mark.timeout(30)
DEVICES = Path(__file__).resolve().parents[1] / "examples" / "devices"


def _adapter_section(name: str) -> tuple[str, dict]:
    section = tomllib.loads((DEVICES / name).read_text())["adapter"]
    return section["name"], dict(section["config"])


async def test_ocpp16_example_config_drives_the_charger_simulator():
    name, config = _adapter_section("ven-ocpp16.toml")
    adapter = registry.load(name)({**config, "port": 0}, SystemClock())  # any free port in tests
    await adapter.start()
    charger = Ocpp16ChargerSim(f"ws://127.0.0.1:{adapter.port}/{config['charge_point_id']}",
                               BatteryPhysics(capacity_kwh=60, soc_pct=40, max_charge_kw=7.2))
    try:
        await charger.start()
        await adapter.wait_connected(5)

        async def charging_reported():
            while (await adapter.read()).kw <= 0:
                await asyncio.sleep(0.05)
        await asyncio.wait_for(charging_reported(), 5)
    finally:
        await charger.stop()
        await adapter.stop()


async def test_sunspec_example_config_drives_the_inverter_simulator():
    name, config = _adapter_section("ven-sunspec.toml")
    sim = SunSpecBatterySim(BatteryPhysics(capacity_kwh=13.5, soc_pct=77, max_charge_kw=5, max_discharge_kw=5))
    await sim.start()
    adapter = registry.load(name)({**config, "port": sim.port}, SystemClock())
    try:
        await adapter.start()
        assert (await adapter.read()).soc_pct == pytest.approx(77, abs=0.2)
    finally:
        await adapter.stop()
        await sim.stop()


@pytest.mark.parametrize("name", ["ven-ocpp16.toml", "ven-sunspec.toml"])
def test_example_configs_load_as_ven_configs(name, tmp_path):
    ven_config = pytest.importorskip("ven.config", reason="the VEN agent is not on this branch")
    from certs.pki import ensure_dev_pki
    shutil.copytree(DEVICES, tmp_path, dirs_exist_ok=True)
    ensure_dev_pki(tmp_path / "pki", ["ven-101", "ven-102"])   # the config checks its files
    agent = ven_config.load_agent(tmp_path / name)
    assert agent.adapter == _adapter_section(name)[0]
    assert agent.adapter_config == _adapter_section(name)[1]
