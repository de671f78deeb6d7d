"""Adapter discovery through the `flexadr.adapters` entry-point group."""
from __future__ import annotations

from importlib.metadata import entry_points

from adapters.base import Adapter

GROUP = "flexadr.adapters"


class UnknownAdapter(LookupError):
    pass


def available() -> dict[str, str]:
    """Adapter name -> 'module:Class' for every installed adapter."""
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


def load(name: str) -> type[Adapter]:
    matches = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not matches:
        known = ", ".join(sorted(available())) or "none"
        raise UnknownAdapter(f"no adapter named {name!r} is installed (installed: {known})")
    cls = matches[0].load()
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise TypeError(f"entry point {name!r} does not name an Adapter subclass: {cls!r}")
    return cls
