"""The VTN store: every registration, event, opt response and telemetry point."""
from vtn.store.db import Store, UTCDateTime  # noqa: F401
from vtn.store.models import Event, EventTarget, TelemetryPoint, Ven  # noqa: F401
