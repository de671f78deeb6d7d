"""MQTT topic names of the 3.1 notifier (GET /notifiers/mqtt/topics/...), one place.

`{prefix}{objects}/{operation}` as the Definition's example (`programs/create`); per-VEN
topics under `vens/{venID}/`, which the broker's ACL lets only that VEN's client (and
business logic) read. Operations are lower case in topic names; `+` is ALL.
"""
from __future__ import annotations

OPERATIONS = ("CREATE", "UPDATE", "DELETE")


class Topics:
    def __init__(self, prefix: str = ""):
        self.prefix = prefix

    def _topic(self, path: str, operation: str) -> str:
        return f"{self.prefix}{path}/{operation.lower()}"

    def listing(self, path: str, create: bool = True) -> dict:
        """The notifierOperationsTopics object for `path` (no CREATE for one object)."""
        topics = {op: self._topic(path, op) for op in OPERATIONS if create or op != "CREATE"}
        topics["ALL"] = f"{self.prefix}{path}/+"
        return {"topics": topics}

    def events(self, operation: str) -> str:
        return self._topic("events", operation)

    def program_events(self, program_id: str, operation: str) -> str:
        return self._topic(f"programs/{program_id}/events", operation)

    def ven_events(self, ven_id: str, operation: str) -> str:
        return self._topic(f"vens/{ven_id}/events", operation)

    def ven_root(self, ven_id: str) -> str:
        """Everything of one VEN (ACL)."""
        return f"{self.prefix}vens/{ven_id}/#"

    def everything(self) -> str:
        return f"{self.prefix}#"
