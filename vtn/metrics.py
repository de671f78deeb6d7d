"""Prometheus metrics of the VTN (served at /metrics by the admin API).

Counters are per process; gauges that describe the store (VENs online, events
by status) are computed from the database when /metrics is scraped.
"""
from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()
MESSAGES_IN = Counter("flexadr_vtn_messages_received_total",
                      "OpenADR messages received, by type", ["message_type"], registry=REGISTRY)
MESSAGES_OUT = Counter("flexadr_vtn_messages_sent_total",
                       "OpenADR messages sent, by type", ["message_type"], registry=REGISTRY)
REQUESTS = Counter("flexadr_vtn_http_requests_total", "OpenADR HTTP requests, by service",
                   ["service"], registry=REGISTRY)
SIGNATURE_FAILURES = Counter("flexadr_vtn_signature_failures_total",
                             "Messages rejected for their XML signature", registry=REGISTRY)
POLLS_TOO_FAST = Counter("flexadr_vtn_polls_too_fast_total",
                         "Polls refused (459) for polling faster than the registration asked",
                         registry=REGISTRY)
TELEMETRY_POINTS = Counter("flexadr_vtn_telemetry_points_stored_total",
                           "New telemetry intervals stored", registry=REGISTRY)
TELEMETRY_REVISIONS = Counter("flexadr_vtn_telemetry_revisions_total",
                              "Re-sent telemetry values that differ from the first (kept as revisions)",
                              registry=REGISTRY)
TELEMETRY_UNINTERPRETED = Counter("flexadr_vtn_telemetry_uninterpreted_total",
                                  "Telemetry values kept raw: no meaning the VTN can store",
                                  registry=REGISTRY)
TELEMETRY_REJECTED = Counter("flexadr_vtn_telemetry_rejected_total",
                             "Telemetry values quarantined, by the check that failed "
                             "(report, interval, value or the quantity)", ["check"],
                             registry=REGISTRY)
TELEMETRY_LAG = Histogram("flexadr_vtn_telemetry_lag_seconds",
                          "Receipt time minus end of the newest interval of a report",
                          buckets=(1, 5, 15, 60, 300, 900, 3600, 86400), registry=REGISTRY)
VENS_ONLINE = Gauge("flexadr_vtn_vens_online", "VENs seen within 3 poll intervals",
                    registry=REGISTRY)
VENS_REGISTERED = Gauge("flexadr_vtn_vens_registered", "VENs with a registration",
                        registry=REGISTRY)
EVENTS = Gauge("flexadr_vtn_events", "Events by stored status", ["status"], registry=REGISTRY)


@web.middleware
async def middleware(request: web.Request, handler):
    if request.method == "POST" and "/OpenADR2/" in request.path:
        REQUESTS.labels(request.path.rsplit("/", 1)[-1]).inc()
    return await handler(request)
