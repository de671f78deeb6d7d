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


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.strip()).astimezone(UTC)


def parse_cap_atom(text: str | bytes) -> list[Alert]:
    """Alerts of an NWS CAP 1.1 ATOM index feed."""
    if isinstance(text, str):
        text = text.encode()
    # The real feed declares `version = '1.0'` with spaces; lxml copes with bytes.
    root = etree.fromstring(text, parser=etree.XMLParser(resolve_entities=False,
                                                         no_network=True))
    alerts = []
    for entry in root.iter(f"{ATOM}entry"):
        def field(name: str, ns: str = CAP) -> str:
            node = entry.find(f"{ns}{name}")
            return (node.text or "").strip() if node is not None else ""

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
        sent = _when(field("published", ATOM)) or _when(field("updated", ATOM))
        effective = _when(field("effective")) or sent
        expires = _when(field("expires")) or effective
        event = field("event")
        if not event or effective is None:
            continue      # the "no active alerts" placeholder entry has no event
        alerts.append(Alert(
            id=field("id", ATOM), event=event, severity=field("severity") or "Unknown",
            urgency=field("urgency"), certainty=field("certainty"),
            status=field("status") or "Actual", msg_type=field("msgType") or "Alert",
            sent_utc=sent or effective, onset_utc=_when(field("onset")) or effective,
            end_utc=expires, ugc=tuple(codes["UGC"]), fips6=tuple(codes["FIPS6"]),
            area_desc=field("areaDesc")))
    return alerts


def parse_geojson(data: str | bytes | dict) -> list[Alert]:
    """Alerts of an api.weather.gov GeoJSON FeatureCollection (or a single Feature)."""
    if not isinstance(data, dict):
        data = json.loads(data)
    features = data.get("features", [data] if data.get("type") == "Feature" else [])
    alerts = []
    for feature in features:
        p = feature.get("properties", {})
        geocode = p.get("geocode") or {}
        effective = _when(p.get("effective")) or _when(p.get("sent"))
        if not p.get("event") or effective is None:
            continue
        sent = _when(p.get("sent")) or effective
        alerts.append(Alert(
            id=p.get("id") or feature.get("id", ""), event=p["event"],
            severity=p.get("severity") or "Unknown", urgency=p.get("urgency") or "",
            certainty=p.get("certainty") or "", status=p.get("status") or "Actual",
            msg_type=p.get("messageType") or "Alert", sent_utc=sent,
            onset_utc=_when(p.get("onset")) or effective,
            end_utc=_when(p.get("ends")) or _when(p.get("expires")) or effective,
            ugc=tuple(geocode.get("UGC") or ()),
            fips6=tuple(code[-6:].zfill(6) for code in geocode.get("SAME") or ()),
            area_desc=p.get("areaDesc") or ""))
    return alerts


def parse_alerts(text: str | bytes) -> list[Alert]:
    """Either format, told apart by the first non-blank character."""
    head = (text.decode(errors="replace") if isinstance(text, bytes) else text).lstrip()[:1]
    return parse_geojson(text) if head == "{" else parse_cap_atom(text)


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
