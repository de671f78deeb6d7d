"""Entry-point discovery: built-in adapters by name, and a third-party package installed by the test."""
from __future__ import annotations

import importlib
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from adapters import registry
from adapters.base import Adapter, Capability
from adapters.testing import DelayScenario, SimulatedTime, run_charge_delay
from flexadr.clock import ManualClock

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "flexadr-example-adapter"
BUILT_IN = {
    "sim": "adapters.sim:SimAdapter",
    "ocpp16": "adapters.ocpp16:Ocpp16Adapter",
    "ocpp2": "adapters.ocpp2:Ocpp2Adapter",
    "sunspec": "adapters.sunspec:SunSpecAdapter",
    "telematics": "adapters.telematics:TelematicsAdapter",
}


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_every_built_in_adapter_loads_by_name(name):
    assert registry.available()[name] == BUILT_IN[name]
    cls = registry.load(name)
    assert issubclass(cls, Adapter)
    assert Capability.TELEMETRY in cls.capabilities or name in ("sim", "ocpp2")


def test_unknown_name_lists_what_is_installed():
    with pytest.raises(registry.UnknownAdapter, match="ocpp16"):
        registry.load("no-such-adapter")


@pytest.fixture(scope="module")
def example_installed(tmp_path_factory):
    """pip-install the example package into a scratch dir and put it on sys.path.

    --no-index/--no-deps/--no-build-isolation: nothing is fetched, flexadr itself
    is already installed, and the build uses the setuptools of this venv.
    """
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(EXAMPLE)],
                   check=True, timeout=120)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    yield target
    sys.path.remove(str(target))
    sys.modules.pop("flexadr_example_adapter", None)


def test_third_party_package_is_found_and_loaded_by_name(example_installed):
    assert registry.available()["example_relay"] == "flexadr_example_adapter:RelayChargerAdapter"
    cls = registry.load("example_relay")
    assert cls.__module__ == "flexadr_example_adapter"
    assert str(example_installed) in sys.modules["flexadr_example_adapter"].__file__


async def test_third_party_adapter_passes_the_conformance_kit(example_installed):
    clock = ManualClock(datetime(2026, 7, 1, 18, tzinfo=timezone.utc))
    adapter = registry.load("example_relay")({"charger_kw": 11}, clock)
    report = await run_charge_delay(adapter, adapter, SimulatedTime(clock), DelayScenario(window_s=60))
    report.assert_passed()
