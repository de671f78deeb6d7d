"""Logging for `vtn serve`, `ven run`, `ven fleet` and the demo: what an operator needs
at INFO by default, library noise only when asked for.

Our loggers (vtn, ven, adapters, schedules, flexadr) log registrations, events and
their state changes, opts, notices, device failures and planner decisions at INFO.
openleadr dumps every message at INFO, aiohttp logs every request and apscheduler
every job run: those stay at WARNING (apscheduler at ERROR: its "maximum number of
running instances reached" warnings mean a skipped tick, which our jobs tolerate)
until `-vv`.

    verbosity 0: ours INFO,  libraries WARNING
    verbosity 1: ours DEBUG, libraries WARNING
    verbosity 2: everything DEBUG
"""
from __future__ import annotations

import asyncio
import json
import logging
import sys
from datetime import datetime, timezone
from typing import Literal

OURS = ("vtn", "ven", "adapters", "schedules", "flexadr", "certs")
LIBRARIES = {"openleadr": logging.WARNING, "aiohttp.access": logging.WARNING,
             "aiohttp": logging.WARNING, "apscheduler": logging.ERROR,
             "asyncio": logging.WARNING, "alembic": logging.WARNING,
             "sqlalchemy": logging.WARNING, "websockets": logging.WARNING,
             "ocpp": logging.WARNING, "pymodbus": logging.WARNING}
Format = Literal["text", "json"]
FORMATS = ("text", "json")
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers (journald, Loki, Elastic...)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": datetime.fromtimestamp(record.created, timezone.utc)
                 .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                 "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class ShutdownNoise(logging.Filter):
    """Drops what stopping a VEN leaves in flight: openleadr closes its HTTP session while
    an apscheduler poll job may still be waiting on it, and that job ends in a
    CancelledError traceback or a "Connector is closed" error. Neither is a failure; a
    poll that fails while the process runs has another message and is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("apscheduler") and record.exc_info and isinstance(
                record.exc_info[1], asyncio.CancelledError):
            return False
        return not (record.name == "openleadr" and "Connector is closed" in record.getMessage())


def setup(verbosity: int = 0, fmt: Format = "text", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT))
    handler.addFilter(ShutdownNoise())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    everything = verbosity >= 2
    root.setLevel(logging.DEBUG if everything else logging.WARNING)
    for name in OURS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbosity >= 1 else logging.INFO)
    for name, level in LIBRARIES.items():
        logging.getLogger(name).setLevel(logging.DEBUG if everything else level)


def add_format_option(parser) -> None:
    parser.add_argument("--log-format", choices=FORMATS, default="text",
                        help="log lines as text (default) or one JSON object per line")
