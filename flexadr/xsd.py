"""Validation of OpenADR 2.0b messages against the official XSD shipped with openleadr.

One helper, used by tests (every message both ways) and by runtime checks.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import openleadr
from lxml import etree

from flexadr import oadr_xml

SCHEMA_PATH = Path(openleadr.__file__).parent / "schema" / "oadr_20b.xsd"


class SchemaViolation(ValueError):
    """A message that is not valid OpenADR 2.0b."""

    def __init__(self, errors: list[str], message: bytes):
        self.errors = errors
        self.message = message
        super().__init__("; ".join(errors))


@lru_cache(maxsize=1)
def _schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMA_PATH)))


def validate(message: str | bytes) -> etree._Element:
    """Parse and validate one message; raise SchemaViolation listing every error."""
    data = message.encode("utf-8") if isinstance(message, str) else message
    try:
        tree = oadr_xml.parse(data)
    except oadr_xml.Malformed as err:
        raise SchemaViolation([str(err)], data) from err
    check(tree, data)
    return tree


def check(tree: etree._Element, data: bytes = b"") -> None:
    """Validate a tree built by oadr_xml.parse (never by a schema-validating parser)."""
    schema = _schema()
    if not schema.validate(tree):
        errors = [f"line {e.line}: {e.message}" for e in schema.error_log]
        raise SchemaViolation(errors, data)


def message_type(tree: etree._Element) -> str:
    """The name of the signed object's payload, e.g. 'oadrPoll'."""
    signed = tree.find("{http://openadr.org/oadr-2.0b/2012/07}oadrSignedObject")
    payload = next(signed.iterchildren(etree.Element), None) if signed is not None else None
    return etree.QName(payload if payload is not None else tree).localname
