"""`vtn doctor URL` against a real VTN on 127.0.0.1: what it reports for an enrolled VEN
(run as a user runs it, a subprocess), for a VTN that refuses the query, and every way of
not getting an OpenADR answer (one line, exit 2; these run the CLI in a thread beside the
VTN's event loop, which is faster than a process each)."""
from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
from datetime import timedelta
from pathlib import Path

from certs.pki import ensure_dev_pki
from tests.hostile_peer import PATH, VEN, enrol, pki_for, running_vtn
from vtn.cli import main

ROOT = Path(__file__).resolve().parents[1]


def argv(url: str, pki, name: str = VEN, ca_file: Path | None = None, *extra: str) -> list[str]:
    return ["doctor", url, "--cert", str(pki.vens[name].cert), "--key", str(pki.vens[name].key),
            "--ca-file", str(ca_file or pki.ca.cert), *extra]


async def doctor(*args) -> tuple[int, str, str]:
    """The VTN runs in this event loop, so the CLI runs as a child process beside it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vtn.cli", *argv(*args),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def in_thread(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()                  # not openleadr's banner from the VTN's start
    code = await asyncio.to_thread(main, argv(*args))
    out, err = capsys.readouterr()
    return code, out, err


async def test_doctor_reports_tls_chain_fingerprint_skew_and_the_registration(tmp_path, store,
                                                                              capsys):
    pki = pki_for(tmp_path)
    enrol(store, pki)
    async with running_vtn(store, pki) as url:
        code, out, err = await doctor(url, pki)
        tls12 = await in_thread(capsys, url, pki, VEN, None, "--tls-profile", "openadr")
    # A VTN that accepts ReplayProtect timestamps only from 60 s ahead of its clock on, as
    # if ours were a minute slow: it refuses the signed query.
    async with running_vtn(store, pki, replay_past=timedelta(seconds=-60)) as slow_url:
        lagging = await in_thread(capsys, slow_url, pki)
    assert code == 0, err
    lines = out.splitlines()
    port = url.split(":")[2].split("/")[0]
    assert lines[0] == f"connected to 127.0.0.1:{port}"
    assert re.fullmatch(r"TLS: TLSv1\.3, cipher TLS_\w+ \(\d+ bits\)", lines[1])
    assert lines[2].startswith("VTN certificate: CN=")
    assert lines[3] == f"VTN fingerprint: {pki.vtn.fingerprint} (a VEN's vtn_fingerprint)"
    assert lines[4].startswith("chain: CN=") and lines[4].count(" <- ") == 1
    assert re.fullmatch(r"clock skew: [+-]\d+ s, \+-1 s \(VTN ahead when positive; Date: .+ GMT\)",
                        lines[5])
    assert lines[6] == ("oadrQueryRegistration: oadrCreatedPartyRegistration 200 OK, "
                        "vtnID HOSTILE_VTN, poll every 1 s, profiles 2.0b (simpleHttp)")
    # the VTN's OpenADR refusal is reported, exit 1
    code, out, err = lagging
    assert code == 1, (out, err)
    assert re.match(r"oadrQueryRegistration: \w+ 4\d\d ", out.splitlines()[-1]), out
    # the Alliance profile: TLS 1.2 and its ECDSA suite
    code, out, _ = tls12
    assert code == 0 and "TLS: TLSv1.2, cipher ECDHE-ECDSA-AES128-SHA256" in out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_no_openadr_answer_is_one_line_and_exit_2(tmp_path, store, capsys):
    pki = pki_for(tmp_path)
    other = ensure_dev_pki(tmp_path / "other", [])
    enrol(store, pki)
    closed = f"https://127.0.0.1:{_free_port()}{PATH}"
    async with running_vtn(store, pki) as url:
        cases = [
            (await in_thread(capsys, url, pki, VEN, other.ca.cert),
             "vtn doctor: TLS: the VTN's certificate does not verify against --ca-file: "),
            (await in_thread(capsys, closed, pki), "vtn doctor: cannot connect to 127.0.0.1:"),
            (await in_thread(capsys, url.replace("https", "http"), pki), "vtn doctor: http://"),
            (await in_thread(capsys, url, pki, VEN, tmp_path / "nope.crt"), "vtn doctor: --ca-file: no such"),
            (await in_thread(capsys, url, pki, VEN, pki.vens[VEN].key), "vtn doctor: --cert/--key/--ca-file"),
        ]
    for (code, out, err), expected in cases:
        assert code == 2 and out == "", (expected, out, err)
        assert err.startswith(expected) and len(err.splitlines()) == 1, (expected, err)
        assert "Traceback" not in err
