"""Fuzz the VTN's OpenADR endpoint: N inputs, counted by HTTP status and OpenADR answer.

The same mutators as tests/test_hostile_fuzz.py (tests/hostile_fuzz.py), driven by a seeded
random.Random: half structure-aware mutations of every message type a VEN sends, re-signed
with the VEN's certificate, half byte mutations of signed messages, posted over mutual TLS to
a VTN on SQLite (a fresh one every 5,000 inputs). Prints one JSON object: counts by answer ("oadrCreatedOpt 454", "empty" for
an oadrResponse, "HTTP 500" ...), and every problem (a status other than 200, an answer that
is not valid 2.0b, a refused input that changed the store).

    .venv/bin/python -m bench.fuzz_openadr --count 100000 --seed 1
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from tests.hostile_fuzz import Rig, byte_flip, judge, structure


FRESH_EVERY = 5000   # inputs per store: what accepted inputs add makes each check slower


def run(count: int, seed: int) -> dict:
    logging.getLogger("vtn.security").setLevel(logging.ERROR)
    logging.getLogger("openleadr").setLevel(logging.ERROR)
    rig = Rig(Path(tempfile.mkdtemp()))
    rng = random.Random(seed)
    answers: dict[str, Counter] = {"structure": Counter(), "bytes": Counter()}
    problems: list[dict] = []
    started = time.perf_counter()
    try:
        for i in range(count):
            if i and i % FRESH_EVERY == 0:
                rig.close()
                rig = Rig(Path(tempfile.mkdtemp()))
            kind, mutate = ("structure", structure) if i % 2 == 0 else ("bytes", byte_flip)
            service, body = mutate(rng, rig.peer, rig.messages)
            label, problem = judge(rig, service, body)
            rig.keep_registered()
            answers[kind][label] += 1
            if problem is not None:
                problems.append({"input": i, "service": service, "problem": problem,
                                 "body": body[:2000].decode("utf-8", "replace")})
    finally:
        rig.close()
    elapsed = time.perf_counter() - started
    total = answers["structure"] + answers["bytes"]
    return {"inputs": count, "seed": seed, "seconds": round(elapsed, 1),
            "inputs_per_s": round(count / elapsed, 1),
            "http_500": sum(n for label, n in total.items() if label == "HTTP 500"),
            "problems": len(problems),
            "accepted": sum(n for label, n in total.items()
                            if label.endswith(" 200") or label == "empty"),
            "by_answer": dict(total.most_common()),
            "by_mutation": {kind: dict(c.most_common()) for kind, c in answers.items()},
            "first_problems": problems[:20]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="inputs to send (default 100000)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    result = run(args.count, args.seed)
    print(json.dumps(result, indent=1))
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
