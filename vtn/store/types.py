"""Column types of the VTN tables (shared with the VEN's local store)."""
from flexadr.dbtypes import UTCDateTime  # noqa: F401
