"""Device adapters: one plugin per device family, found through the `flexadr.adapters` entry points."""
from adapters.base import (  # noqa: F401
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
