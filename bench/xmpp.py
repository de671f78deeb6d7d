"""A VEN's request round trip over XMPP (through Prosody) beside the same over HTTPS.

    .venv/bin/python -m bench.xmpp --requests 200

One VTN (`vtn.service.Vtn`, SQLite, [xmpp] configured) and one registered VEN in this
process; Prosody (Debian's package, tests/prosody.py) in its own. The VEN sends
`--requests` signed oadrRequestEvent one after the other, first over HTTPS (mutual
TLS, one keep-alive connection: the baseline), then over XMPP (one connection,
STARTTLS), and times each from send to the VTN's signed answer. Both go through the
same message path (XSD, signature, ReplayProtect, store transaction); XMPP adds the
server's hop both ways. The answers are not verified here. One JSON line; noisy on a
shared machine.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import aiohttp

from bench.poll import _quiet
from certs.pki import ensure_dev_pki
from flexadr.clock import SystemClock
from flexadr.demo import _free_port
from flexadr.signing import MessageSigner
from flexadr.xmpp import Endpoint
from tests.prosody import Prosody
from vtn import push
from vtn.service import Vtn, VtnConfig
from vtn.store import Store, Ven

VEN = "ven-a"
PATH = "/OpenADR2/Simple/2.0b"


async def _none(_sender, _body):
    return None


async def _https(url: str, pki, sign: MessageSigner, n: int) -> list[float]:
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    context.check_hostname = False
    context.load_cert_chain(str(pki.vens[VEN].cert), str(pki.vens[VEN].key))
    times = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, limit=1)) as s:
        for i in range(n):
            message = sign("oadrRequestEvent", request_id=f"h{i}", ven_id=VEN)
            began = time.perf_counter()
            async with s.post(f"{url}/EiEvent", data=message,
                              headers={"content-type": "application/xml"}) as reply:
                body = await reply.read()
            times.append(time.perf_counter() - began)
            assert b"responseCode>200<" in body, body[-900:]
    return times


async def _xmpp(prosody: Prosody, pki, vtn_jid: str, sign: MessageSigner, n: int) -> list[float]:
    endpoint = Endpoint(prosody.account(VEN, pki.vens[VEN].cert, pki.vens[VEN].key, "bench"),
                        _none)
    endpoint.start()
    await asyncio.wait_for(endpoint.connected.wait(), 10)
    times = []
    try:
        for i in range(n):
            message = sign("oadrRequestEvent", request_id=f"x{i}", ven_id=VEN)
            began = time.perf_counter()
            body = await endpoint.request(vtn_jid, message, 10)
            times.append(time.perf_counter() - began)
            assert b"responseCode>200<" in body, body[-900:]
    finally:
        await endpoint.stop()
    return times


def _ms(values: list[float]) -> dict:
    values = sorted(values)
    return {"p50_ms": round(statistics.median(values) * 1000, 2),
            "p95_ms": round(values[int(0.95 * (len(values) - 1))] * 1000, 2)}


async def run(root: Path, n: int) -> dict:
    pki = ensure_dev_pki(root / "pki", [VEN])
    prosody = Prosody(root, pki, ["vtn", VEN]).start()
    store = Store(f"sqlite:///{root / 'vtn.sqlite'}")
    try:
        now = SystemClock().now()
        store.enrol(Ven(ven_id=VEN, ven_name=VEN, fingerprint=pki.vens[VEN].fingerprint,
                        program_id="connected_solutions", device_kind="battery"))
        store.set_registration(VEN, "reg-bench", now)
        account = prosody.account("vtn", pki.vtn.cert, pki.vtn.key)
        push.register(store, VEN, f"xmpp:{VEN}@localhost/bench", now)
        port = _free_port()
        vtn = Vtn(VtnConfig("BENCH_VTN", "127.0.0.1", port, pki.vtn.cert, pki.vtn.key,
                            pki.ca.cert, poll_interval=timedelta(seconds=10), xmpp=account),
                  store, SystemClock())
        await vtn.start(run_ticker=False)
        try:
            await asyncio.wait_for(vtn.xmpp.endpoint.connected.wait(), 10)
            sign = MessageSigner.from_files(pki.vens[VEN].cert, pki.vens[VEN].key)
            https = await _https(f"https://127.0.0.1:{port}{PATH}", pki, sign, n)
            xmpp = await _xmpp(prosody, pki, account.jid, sign, n)
        finally:
            await vtn.stop()
    finally:
        store.close()
        prosody.stop()
    ours, baseline = _ms(xmpp), _ms(https)
    return {"bench": "xmpp_round_trip", "requests": n, "xmpp": ours, "https": baseline,
            "xmpp_over_https_p50": round(ours["p50_ms"] / baseline["p50_ms"], 2),
            "cores": os.cpu_count(), "load_1m": round(os.getloadavg()[0], 2),
            "argv": sys.argv}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    _quiet()
    with tempfile.TemporaryDirectory() as root:
        print(json.dumps(asyncio.run(run(Path(root), args.requests))))


if __name__ == "__main__":
    main()
