"""Create / parse / sign / verify per OpenADR 2.0b message type: ours, stock openleadr's
functions, and the primitives' floor, in one process and one run.

    .venv/bin/python -m bench.messages --key ecdsa --messages 300

For each message type (a VEN's oadrPoll and oadrUpdateReport, a VTN's empty oadrResponse
and oadrDistributeEvent), CPU microseconds per message (time.process_time):

- **create**: the unsigned message text. ours: `flexadr.signing` (the prebuilt canonical
  oadrResponse, else openleadr's templates with escaping); stock:
  `messaging.create_message(..., disable_signature=True)`.
- **sign**: create + sign. ours: `MessageSigner` (key parsed once, `sign_fast`); stock:
  `messaging.create_message(..., cert, key)` (signxml, key parsed per message).
- **parse**: body bytes to openleadr's payload dict, XSD checked. ours: `oadr_xml.parse` +
  `xsd.check` + `oadr_xml.payload`; stock: `validate_xml_schema` + `parse_message`
  (a schema-validating lxml parse, then xmltodict over the whole body).
- **verify**: the XML signature of a parsed tree. ours: `verify_fast` (certificate =
  the TLS one); stock: `validate_xml_signature` (signxml, and its replay check: every
  message verified once).
- **floor**: what no implementation avoids: lxml parse + XSD validation of the body, the
  three C14N of a signature (signed object, ReplayProtect object, SignedInfo), SHA-256,
  and one `cryptography` sign (create side) or verify (receive side).

One JSON line: per type and operation {ours, stock, floor} in us, with the core count and
command line. Figures are CPU time of this process; on a shared machine they still vary.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import ssl
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from lxml import etree
from openleadr import messaging, objects

from certs.pki import create_ca, issue
from flexadr import oadr_xml, signing, xsd

VEN = "ven-bench"
OK = {"response_code": 200, "response_description": "OK", "request_id": "req-0"}
DS = "{http://www.w3.org/2000/09/xmldsig#}"


def _event() -> objects.Event:
    start = datetime(2026, 7, 1, 18, tzinfo=timezone.utc)
    return objects.Event(
        event_descriptor=objects.EventDescriptor(
            event_id="e1", modification_number=0, market_context="http://m",
            event_status="far", created_date_time=start),
        active_period=objects.ActivePeriod(dtstart=start, duration=timedelta(hours=3)),
        event_signals=[objects.EventSignal(
            signal_name="LOAD_DISPATCH", signal_type="setpoint", signal_id="s1",
            intervals=[objects.Interval(dtstart=start + timedelta(hours=i),
                                        duration=timedelta(hours=1), signal_payload=v, uid=i)
                       for i, v in enumerate((5.0, 2.0, 4.0))])],
        targets=[objects.Target(ven_id=VEN)])


def _report() -> objects.Report:
    start = datetime(2026, 7, 1, 16, tzinfo=timezone.utc)
    return objects.Report(
        report_request_id="rr-1", report_specifier_id="spec-1", report_name="TELEMETRY_USAGE",
        dtstart=start, intervals=[objects.ReportInterval(
            dtstart=start + timedelta(minutes=15 * i), duration=timedelta(minutes=15),
            report_payload=objects.ReportPayload(r_id="kw", value=4.5 + i)) for i in range(4)])


MESSAGES: dict[str, Callable[[], dict]] = {
    "oadrPoll": lambda: {"ven_id": VEN},
    "oadrResponse": lambda: {"ven_id": VEN, "vtn_id": "VTN", "response": dict(OK)},
    "oadrDistributeEvent": lambda: {"request_id": "d1", "vtn_id": "VTN", "events": [_event()],
                                    "response": dict(OK)},
    "oadrUpdateReport": lambda: {"ven_id": VEN, "request_id": "u1", "reports": [_report()]},
}


def per_message_us(operation: Callable[[int], object], count: int, budget_s: float) -> float:
    """CPU microseconds per call of operation(i), i = 0.. until `count` calls or the budget."""
    began = time.process_time()
    done = 0
    while done < count:
        operation(done)
        done += 1
        if time.process_time() - began > budget_s:
            break
    return round(1e6 * (time.process_time() - began) / done, 1)


class Primitives:
    """The floor: parse + XSD, C14N, digest, and one public-key operation."""

    def __init__(self, key_pem: bytes):
        self.key = serialization.load_pem_private_key(key_pem, None)
        self.public = self.key.public_key()

    def _c14n_and_digest(self, tree: etree._Element) -> bytes:
        signature = tree.find(f"{DS}Signature")
        for element in (tree.find("{http://openadr.org/oadr-2.0b/2012/07}oadrSignedObject"),
                        signature.find(f"{DS}Object")):
            hashlib.sha256(signing.canonical(element)).digest()
        return signing.canonical(signature.find(f"{DS}SignedInfo"))

    def sign(self, tree: etree._Element) -> bytes:
        data = self._c14n_and_digest(tree)
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            return self.key.sign(data, ec.ECDSA(hashes.SHA256()))
        return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def verify(self, tree: etree._Element, der_signature: bytes) -> None:
        data = self._c14n_and_digest(tree)
        if isinstance(self.public, ec.EllipticCurvePublicKey):
            self.public.verify(der_signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            self.public.verify(der_signature, data, padding.PKCS1v15(), hashes.SHA256())


def measure(message_type: str, paths, count: int, budget_s: float) -> dict:
    cert_pem, key_pem = paths.cert.read_bytes(), paths.key.read_bytes()
    der = ssl.PEM_cert_to_DER_cert(cert_pem.decode())
    ours_signer = signing.MessageSigner(cert_pem, key_pem)
    floor = Primitives(key_pem)
    payload = MESSAGES[message_type]

    def ours_create(_):
        built = signing.prebuilt(message_type, payload())
        return built if built is not None else signing.render(message_type, **payload())

    figures: dict[str, dict] = {"create": {
        "ours": per_message_us(ours_create, count, budget_s),
        "stock": per_message_us(lambda _: messaging.create_message(
            message_type, disable_signature=True, **payload()), count, budget_s)}}

    ours_signed = [ours_signer(message_type, **payload()) for _ in range(count)]
    stock_signed: list[str] = []
    figures["sign"] = {
        "ours": per_message_us(lambda _: ours_signer(message_type, **payload()), count, budget_s),
        "stock": per_message_us(lambda _: stock_signed.append(messaging.create_message(
            message_type, cert=cert_pem, key=key_pem, **payload())), count, budget_s)}
    bodies = [m.encode() for m in ours_signed]
    trees = [xsd.validate(body) for body in bodies]
    floor_signatures = [floor.sign(tree) for tree in trees]
    figures["sign"]["floor"] = per_message_us(lambda i: floor.sign(trees[i]), count, budget_s)

    figures["parse"] = {
        "ours": per_message_us(lambda i: oadr_xml.payload(_parse_checked(bodies[i])),
                               count, budget_s),
        "stock": per_message_us(lambda i: _stock_parse(bodies[i]), count, budget_s),
        "floor": per_message_us(lambda i: xsd.check(etree.fromstring(bodies[i])),
                                count, budget_s)}

    stock_trees = [etree.fromstring(m.encode()) for m in stock_signed]
    figures["verify"] = {
        "ours": per_message_us(lambda i: signing.verify_fast(trees[i], der), count, budget_s),
        # openleadr's replay check refuses a nonce seen before: each message verifies once.
        "stock": per_message_us(lambda i: messaging.validate_xml_signature(stock_trees[i]),
                                len(stock_trees), budget_s),
        "floor": per_message_us(lambda i: floor.verify(trees[i], floor_signatures[i]),
                                count, budget_s)}
    return figures


def _parse_checked(body: bytes) -> etree._Element:
    tree = oadr_xml.parse(body)
    xsd.check(tree)
    return tree


def _stock_parse(body: bytes) -> tuple[str, dict]:
    """What openleadr's VTNService.handler does with a body, less the signature."""
    messaging.validate_xml_schema(body)
    return messaging.parse_message(body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300, help="messages per measurement")
    parser.add_argument("--key", choices=("ecdsa", "rsa"), default="ecdsa")
    parser.add_argument("--budget-s", type=float, default=3.0,
                        help="CPU seconds at most per measurement (stock RSA signs ~10/s)")
    parser.add_argument("--types", nargs="+", choices=list(MESSAGES), default=list(MESSAGES))
    args = parser.parse_args(argv)
    if args.messages < 1 or args.budget_s <= 0:
        print("error: --messages and --budget-s must be positive", file=sys.stderr)
        return 2
    import logging
    logging.getLogger("openleadr").setLevel(logging.ERROR)
    # stock's own replay check, without its O(n) scan, and a window that outlasts stock's
    # RSA signing of the messages it then verifies (~0.1 s each)
    messaging.REPLAY_PROTECT_MAX_TIME_DELTA = timedelta(hours=1)
    signing.install_nonce_cache()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ca = create_ca(root, key_type=args.key)
        paths = issue(ca, root, VEN, key_type=args.key)
        results = {message_type: measure(message_type, paths, args.messages, args.budget_s)
                   for message_type in args.types}
    print(json.dumps({"bench": "messages", "key": args.key, "unit": "cpu us per message",
                      "results": results, "cores": os.cpu_count(),
                      "python": platform.python_version(), "argv": sys.argv[1:]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
