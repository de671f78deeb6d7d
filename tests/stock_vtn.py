"""An unmodified openleadr OpenADRServer in a process of its own, serving a test's events.

A process of its own, so nothing the project installs into openleadr in the
test process (signer, nonce cache, service patches) reaches it.

    python tests/stock_vtn.py CONFIG.json

CONFIG: {"port", "cert", "key", "ca_file", "vens": {ven_name: {"ven_id", "fingerprint"}},
"events": [{"event_id", "ven_id", "signal_name", "signal_type", "targets" (optional),
"intervals": [{"dtstart" (ISO), "duration_s", "payload"}]}]}. Prints "ready" once
listening, then one JSON line per opt answer: {"ven_id", "event_id", "opt_type"}.
"""
import asyncio
import json
import sys
from datetime import datetime, timedelta

from openleadr import OpenADRServer, objects


def _print(line: str) -> None:
    print(line, flush=True)


async def main(config: dict) -> None:
    vens = config["vens"]
    by_id = {v["ven_id"]: (name, v) for name, v in vens.items()}

    def ven_lookup(ven_id):
        if ven_id not in by_id:
            return {}
        name, ven = by_id[ven_id]
        return {"ven_id": ven_id, "ven_name": name, "fingerprint": ven["fingerprint"],
                "registration_id": f"reg-{ven_id}"}

    def on_create_party_registration(info):
        ven = vens.get(info["ven_name"])
        return (ven["ven_id"], f"reg-{ven['ven_id']}") if ven else False

    async def on_register_report(report):
        return None        # this test asks for no telemetry

    def on_opt(ven_id, event_id, opt_type):
        _print(json.dumps({"ven_id": ven_id, "event_id": event_id, "opt_type": opt_type}))

    server = OpenADRServer(vtn_id="STOCK_VTN", cert=config["cert"], key=config["key"],
                           http_cert=config["cert"], http_key=config["key"],
                           http_ca_file=config["ca_file"], http_port=config["port"],
                           ven_lookup=ven_lookup, requested_poll_freq=timedelta(seconds=1),
                           show_fingerprint=False)
    server.add_handler("on_create_party_registration", on_create_party_registration)
    server.add_handler("on_register_report", on_register_report)
    for event in config["events"]:
        intervals = [objects.Interval(dtstart=datetime.fromisoformat(i["dtstart"]),
                                      duration=timedelta(seconds=i["duration_s"]),
                                      signal_payload=i["payload"], uid=uid)
                     for uid, i in enumerate(event["intervals"])]
        server.add_event(ven_id=event["ven_id"], signal_name=event["signal_name"],
                         signal_type=event["signal_type"], intervals=intervals,
                         callback=on_opt, event_id=event["event_id"],
                         targets=event.get("targets"),
                         market_context="http://flexadr.org/programs/interop")
    await server.run()
    _print("ready")
    await asyncio.Event().wait()


if __name__ == "__main__":
    with open(sys.argv[1]) as file:
        asyncio.run(main(json.load(file)))
