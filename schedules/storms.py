"""NWS alerts -> storm exclusion periods for a program.

Two alert formats are parsed (from text; reading files is the caller's job):
- the NWS CAP 1.1 ATOM index feed (`alerts.weather.gov/cap/*.php`), one
  `<entry>` per alert with `cap:event`, `cap:effective`, `cap:expires`,
  `cap:severity`, `cap:geocode` (FIPS6 + UGC codes), parsed with lxml;
- api.weather.gov GeoJSON (`/alerts`, `/alerts/active`): a FeatureCollection
  whose `properties` carry event, severity, sent, onset/ends, effective/expires
  and `geocode.UGC` / `geocode.SAME` (FIPS6 with a leading 0).

A program's `[[storms]]` rules pick alerts by zone (UGC or FIPS6), event type
and minimum severity, and turn each into an `Exclusion`: the alert's onset
minus `before_h` to its end plus `after_h`, in UTC, with the moment it became
known (`known_utc`, the alert's send time) so the planner can stay honest: it
may only act on an exclusion known at its decision moment.

Text that does not parse raises the parser's own error (lxml's XMLSyntaxError,
json.JSONDecodeError, with line and column); a feed of the wrong shape or with a
time that does not parse raises AlertFormatError. `sources.read_alerts` turns
either into an error naming the file.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from lxml import etree

from schedules.model import SEVERITIES, Program, StormAction, StormRule

UTC = timezone.utc
ATOM = "{http://www.w3.org/2005/Atom}"
CAP = "{urn:oasis:names:tc:emergency:cap:1.1}"


@dataclass(frozen=True)
class Alert:
    id: str
    event: str
    severity: str
    urgency: str
    certainty: str
    status: str                 # Actual, Exercise, Test, ...
    msg_type: str               # Alert, Update, Cancel
    sent_utc: datetime          # when it was issued: the moment it is known
    onset_utc: datetime         # when the hazard starts
    end_utc: datetime           # when it ends (or the alert expires)
    ugc: tuple[str, ...]
    fips6: tuple[str, ...]
    area_desc: str = ""


@dataclass(frozen=True)
class Exclusion:
    """No event (or no discharge) between start_utc and end_utc, known from known_utc."""
    start_utc: datetime
    end_utc: datetime
    known_utc: datetime
    action: StormAction
    reason: str

    def overlaps(self, start_utc: datetime, end_utc: datetime) -> bool:
        return self.start_utc < end_utc and start_utc < self.end_utc


class AlertFormatError(ValueError):
    """A feed that parses as XML or JSON but not as alerts; `line` is where in
    the feed, when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def _when(text: object, name: str, line: int | None = None) -> datetime | None:
    text = str(text or "").strip()
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        raise AlertFormatError(f"{name}: not an ISO 8601 time: {text!r}", line) from None


def parse_cap_atom(text: str | bytes) -> list[Alert]:
    """Alerts of an NWS CAP 1.1 ATOM index feed. Raises lxml's XMLSyntaxError for
    text that is not XML, AlertFormatError for XML that is not such a feed."""
    if isinstance(text, str):
        text = text.encode()
    # The real feed declares `version = '1.0'` with spaces; lxml copes with bytes.
    root = etree.fromstring(text, parser=etree.XMLParser(resolve_entities=False,
                                                         no_network=True))
    if root.tag != f"{ATOM}feed":
        raise AlertFormatError(f"not an ATOM feed: the root element is "
                               f"<{etree.QName(root).localname}>", root.sourceline)
    alerts = (_cap_alert(entry) for entry in root.iter(f"{ATOM}entry"))
    return [alert for alert in alerts if alert is not None]


def _cap_alert(entry: etree._Element) -> Alert | None:
    def field(name: str, ns: str = CAP) -> str:
        node = entry.find(f"{ns}{name}")
        return (node.text or "").strip() if node is not None else ""

    def when(name: str, ns: str = CAP) -> datetime | None:
        node = entry.find(f"{ns}{name}")
        if node is None:
            return None
        return _when(node.text, f"{'cap' if ns == CAP else 'atom'}:{name}", node.sourceline)

    codes: dict[str, list[str]] = {"UGC": [], "FIPS6": []}
    geocode = entry.find(f"{CAP}geocode")
    if geocode is not None:
        # <valueName>FIPS6</valueName><value>025001 025005</value> pairs, in order
        current = None
        for child in geocode:
            tag = etree.QName(child).localname
            if tag == "valueName":
                current = (child.text or "").strip()
            elif tag == "value" and current in codes:
                codes[current].extend((child.text or "").split())
    sent = when("published", ATOM) or when("updated", ATOM)
    effective = when("effective") or sent
    expires = when("expires") or effective
    event = field("event")
    if not event or effective is None:
        return None       # the "no active alerts" placeholder entry has no event
    return Alert(
        id=field("id", ATOM), event=event, severity=field("severity") or "Unknown",
        urgency=field("urgency"), certainty=field("certainty"),
        status=field("status") or "Actual", msg_type=field("msgType") or "Alert",
        sent_utc=sent or effective, onset_utc=when("onset") or effective,
        end_utc=expires, ugc=tuple(codes["UGC"]), fips6=tuple(codes["FIPS6"]),
        area_desc=field("areaDesc"))


def _object(value: object, where: str) -> dict:
    if not isinstance(value, dict):
        raise AlertFormatError(f"{where}: not a JSON object")
    return value


def parse_geojson(data: str | bytes | dict) -> list[Alert]:
    """Alerts of an api.weather.gov GeoJSON FeatureCollection (or a single Feature).
    Raises json.JSONDecodeError for text that is not JSON, AlertFormatError for
    JSON that is not such a collection."""
    if not isinstance(data, dict):
        data = _object(json.loads(data), "the document")
    features = data.get("features", [data] if data.get("type") == "Feature" else [])
    if not isinstance(features, list):
        raise AlertFormatError("features: not a JSON array")
    alerts = (_geojson_alert(_object(feature, f"features[{i}]"), f"features[{i}]")
              for i, feature in enumerate(features))
    return [alert for alert in alerts if alert is not None]


def _geojson_alert(feature: dict, where: str) -> Alert | None:
    p = _object(feature.get("properties", {}), f"{where}.properties")
    geocode = _object(p.get("geocode") or {}, f"{where}.properties.geocode")

    def when(name: str) -> datetime | None:
        return _when(p.get(name), f"{where}.properties.{name}")

    effective = when("effective") or when("sent")
    if not p.get("event") or effective is None:
        return None
    return Alert(
        id=p.get("id") or feature.get("id", ""), event=p["event"],
        severity=p.get("severity") or "Unknown", urgency=p.get("urgency") or "",
        certainty=p.get("certainty") or "", status=p.get("status") or "Actual",
        msg_type=p.get("messageType") or "Alert", sent_utc=when("sent") or effective,
        onset_utc=when("onset") or effective,
        end_utc=when("ends") or when("expires") or effective,
        ugc=tuple(geocode.get("UGC") or ()),
        fips6=tuple(code[-6:].zfill(6) for code in geocode.get("SAME") or ()),
        area_desc=p.get("areaDesc") or "")


def parse_alerts(text: str | bytes) -> list[Alert]:
    """Either format, told apart by the first non-blank character (raises what
    that format's parser raises)."""
    head = (text.decode(errors="replace") if isinstance(text, bytes) else text).lstrip()[:1]
    return parse_geojson(text) if head in ("{", "[") else parse_cap_atom(text)


def matches(rule: StormRule, alert: Alert) -> bool:
    """The rule covers this alert: actual, same zone, listed type, severe enough."""
    if alert.status != "Actual" or alert.msg_type == "Cancel":
        return False
    if alert.event not in rule.event_types:
        return False
    severity = SEVERITIES.index(alert.severity) if alert.severity in SEVERITIES else 0
    if severity < SEVERITIES.index(rule.min_severity):
        return False
    zones = set(rule.zones)
    return bool(zones.intersection(alert.ugc) or zones.intersection(alert.fips6))


def exclusions(program: Program, alerts: list[Alert]) -> list[Exclusion]:
    """Every exclusion period the program's storm rules derive from `alerts`, by start."""
    out = []
    for rule in program.storms:
        for alert in alerts:
            if matches(rule, alert):
                out.append(Exclusion(
                    start_utc=alert.onset_utc - rule.before,
                    end_utc=alert.end_utc + rule.after,
                    known_utc=alert.sent_utc, action=rule.action,
                    reason=f"{alert.event} ({alert.area_desc or ', '.join(alert.ugc)})"))
    return sorted(out, key=lambda e: (e.start_utc, e.end_utc))


def known_at(periods: list[Exclusion], when_utc: datetime) -> list[Exclusion]:
    """The exclusions a decision taken at `when_utc` may use."""
    return [e for e in periods if e.known_utc <= when_utc]


def active(periods: list[Exclusion], when_utc: datetime,
           action: StormAction | None = None) -> list[Exclusion]:
    """Exclusions in force at `when_utc` (e.g. BYOD storm watch: charge to 100 %)."""
    return [e for e in periods if e.start_utc <= when_utc < e.end_utc
            and e.known_utc <= when_utc and (action is None or e.action is action)]


def warning_until(periods: list[Exclusion], when_utc: datetime) -> datetime | None:
    """End of the storm watch in force at `when_utc` (BYOD: no discharge, charge
    to 100 %), following periods that overlap it; None when there is none."""
    watch = sorted((e for e in periods if e.action is StormAction.NO_DISCHARGE_CHARGE_FULL
                    and e.known_utc <= when_utc), key=lambda e: e.start_utc)
    until = None
    for period in watch:
        if period.start_utc <= (until or when_utc) and period.end_utc > when_utc:
            until = max(until or period.end_utc, period.end_utc)
    return until
