"""The one reader of OpenADR 2.0b bodies that come from a peer: bytes -> tree -> payload.

lxml is only safe here if it never sees a DTD. openleadr parses incoming bodies
with `etree.XMLParser(schema=...)`, and lxml (5.4 to 6.1) segfaults when such a
parser meets an internal entity used in the document (a 332-byte request kills
the process); any DTD also opens the door to billion-laughs expansion. So
`parse` refuses, before lxml reads a byte, a body that is too large, not UTF-8,
or declares a DOCTYPE or ENTITY; then a parser that loads no DTD, resolves no
entity and opens no network connection builds the tree, whose depth is bounded.
The XSD is checked afterwards on the built tree (flexadr.xsd), never by a
schema-validating parser.

`payload` turns that tree into openleadr's message dict (the one its handlers
take) without parsing again: openleadr runs xmltodict over the whole body (the
signature and its certificate included), ~2x the CPU of the lxml parse and XSD
check together. The dict is the one xmltodict would build for the signed object
(same keys, lists for repeated elements, stripped text, comments and PIs left
out), then normalized by openleadr's normalize_dict, except that identifiers
stay the strings they were sent as: normalize_dict reads an rID "true" as True
and "0042" as 42.
"""
from __future__ import annotations

import re

from lxml import etree
from openleadr import messaging, utils

MAX_BYTES = 1024 * 1024   # aiohttp's default client_max_size; the largest report we expect is ~200 kB
MAX_DEPTH = 40            # the deepest 2.0b message (an event's signal payload) is ~14 levels

_FORBIDDEN = (b"<!DOCTYPE", b"<!ENTITY")
_ENCODING = re.compile(rb"^\s*<\?xml[^>]*encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")
_PARSER = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True,
                          dtd_validation=False, huge_tree=False)
# Elements whose text is an identifier or a name: kept verbatim.
_VERBATIM = re.compile(r"(ID|Id|Name|marketContext)$")


class Malformed(ValueError):
    """A body that is not a well-formed, DTD-free, bounded XML document."""


def parse(body: bytes) -> etree._Element:
    """The document of one untrusted body; Malformed says why not."""
    if len(body) > MAX_BYTES:
        raise Malformed(f"the message is {len(body)} bytes, more than the {MAX_BYTES} accepted")
    for marker in _FORBIDDEN:
        if marker in body:
            raise Malformed(f"the message declares a {marker[2:].decode()}: DTDs are not accepted")
    declared = _ENCODING.match(body)
    if declared and declared.group(1).lower() not in (b"utf-8", b"utf8"):
        raise Malformed(f"the message is declared {declared.group(1).decode()}; only UTF-8 is accepted")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise Malformed(f"the message is not UTF-8: {err}") from None
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as err:
        raise Malformed(f"not well-formed XML: {err}") from None
    if root is None:
        raise Malformed("the message is empty")
    if root.getroottree().docinfo.doctype:
        raise Malformed("the message declares a DOCTYPE: DTDs are not accepted")
    _check_depth(root)
    return root


# Is there an element MAX_DEPTH + 1 levels down? (XPath in C: ~20x a Python walk)
_TOO_DEEP = etree.XPath("boolean(" + "/*" * (MAX_DEPTH + 1) + ")")


def _check_depth(root: etree._Element) -> None:
    if _TOO_DEEP(root):
        raise Malformed(f"the message nests elements deeper than {MAX_DEPTH} levels")


class _Verbatim:
    """An identifier's text, hidden from normalize_dict's type guessing (not a str)."""
    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def __str__(self) -> str:   # normalize_dict str()s pending reportRequestIDs
        return self.text


# The namespaces xmltodict (as openleadr calls it) reduces to bare local names.
_LOCAL = frozenset(messaging.NAMESPACES)


def _name(qname: str) -> str:
    if not qname.startswith("{"):
        return qname
    namespace, local = qname[1:].split("}", 1)
    return local if namespace in _LOCAL else f"{namespace}:{local}"


def _as_dict(element: etree._Element):
    """xmltodict's value for `element`, identifiers wrapped in _Verbatim."""
    children = [child for child in element if isinstance(child.tag, str)]
    text = ((element.text or "") + "".join(child.tail or "" for child in element)).strip()
    if not children and not element.attrib:
        return text or None
    node: dict = {f"@{_name(name)}": value for name, value in element.attrib.items()}
    for child in children:
        key = _name(child.tag)
        value = _as_dict(child)
        if isinstance(value, str) and _VERBATIM.search(key):
            value = _Verbatim(value)
        if key not in node:
            node[key] = value
        elif isinstance(node[key], list):
            node[key].append(value)
        else:
            node[key] = [node[key], value]
    if text:
        node["#text"] = text
    return node


def _restore(node):
    if isinstance(node, _Verbatim):
        return node.text
    if isinstance(node, dict):
        return {key: _restore(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_restore(item) for item in node]
    return node


def payload(root: etree._Element) -> tuple[str, dict]:
    """(message type, openleadr payload dict) of a document that `parse` built.

    Raises Malformed if the envelope holds no signed object (a bare oadrPayload).
    """
    signed = root.find("{http://openadr.org/oadr-2.0b/2012/07}oadrSignedObject")
    message = next(signed.iterchildren(etree.Element), None) if signed is not None else None
    if message is None:
        raise Malformed("the oadrSignedObject holds no message")
    content = _as_dict(message)
    if not isinstance(content, dict):
        content = {}
    if content.keys() == _VEN_ID_ONLY and isinstance(content["venID"], _Verbatim):
        # An oadrPoll (most messages a VTN reads): what normalize_dict would make of it.
        return _name(message.tag), {"ven_id": content["venID"].text}
    return _name(message.tag), _restore(utils.normalize_dict(content))


_VEN_ID_ONLY = {"@schemaVersion", "venID"}
