"""Program rules loaded from `schedules/programs/*.toml`.

Times in program files are local to the program's time zone; whatever the
rest of the system stores is UTC.
"""
from __future__ import annotations

import enum
import tomllib
from dataclasses import dataclass
from datetime import time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

PROGRAMS_DIR = Path(__file__).parent / "programs"


class Dispatch(enum.StrEnum):
    CHARGE_DELAY = "charge_delay"
    DISCHARGE = "discharge"


@dataclass(frozen=True)
class SignalMapping:
    """How the program's events look on the wire (OpenADR 2.0b signal name/type)."""
    name: str
    type: str
    value: float | None = None   # fixed payload, e.g. 0.0 capacity for charge-delay
    unit: str | None = None      # 'kW' for LOAD_DISPATCH setpoints


@dataclass(frozen=True)
class DailyWindow:
    start: time
    end: time


@dataclass(frozen=True)
class Program:
    id: str
    name: str
    market_context: str
    timezone: ZoneInfo
    dispatch: Dispatch
    signal: SignalMapping
    window: DailyWindow
    durations: tuple[timedelta, ...]
    notice: timedelta
    telemetry_interval: timedelta
    min_soc_pct: float = 20.0


class ProgramError(ValueError):
    """A program file that cannot be loaded; `problems` lists 'field: problem' lines."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


def _clock_time(text: str) -> time:
    return time.fromisoformat(text)


def from_mapping(data: dict, source: str = "<program>") -> Program:
    try:
        signal = data["signal"]
        window = data["window"]
        return Program(
            id=data["id"],
            name=data["name"],
            market_context=data["market_context"],
            timezone=ZoneInfo(data["timezone"]),
            dispatch=Dispatch(data["dispatch"]),
            signal=SignalMapping(name=signal["name"], type=signal["type"],
                                 value=signal.get("value"), unit=signal.get("unit")),
            window=DailyWindow(_clock_time(window["start"]), _clock_time(window["end"])),
            durations=tuple(timedelta(hours=h) for h in window["durations_h"]),
            notice=timedelta(hours=data["notice_h"]),
            telemetry_interval=timedelta(minutes=data.get("telemetry_interval_min", 15)),
            min_soc_pct=float(data.get("min_soc_pct", 20.0)),
        )
    except KeyError as err:
        raise ProgramError(source, [f"{err.args[0]}: missing"]) from err
    except (ValueError, TypeError) as err:
        raise ProgramError(source, [str(err)]) from err


def load(path: str | Path) -> Program:
    path = Path(path)
    if not path.suffix:
        path = PROGRAMS_DIR / f"{path}.toml"
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ProgramError(str(path), [f"not valid TOML: {err}"]) from err
    return from_mapping(data, str(path))
