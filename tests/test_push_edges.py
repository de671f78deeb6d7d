"""Push mode at its edges: the connectivity limit, what the VEN's endpoint refuses, ven.toml.

Real peers: an aiosmtpd server for the notice, our VEN's aiohttp endpoint over mutual TLS,
`ven run` as a subprocess for the config error.
"""
import asyncio
import dataclasses
import logging
import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from flexadr.clock import SystemClock
from flexadr.config import ConfigError
from flexadr.signing import MessageSigner
from tests.test_notices import smtp  # noqa: F401  (fixture)
from tests.test_openadr_20b import eventually
from tests.test_push import FAST_RETRY, _endpoint, _push_agent
from tests.test_ven_resilience import HOUR, SCALE, _publish
from tests.harness import running_site
from ven.config import agent_config
from vtn.notify import CONNECTIVITY, EmailNotifier
from vtn.programs import ensure_program
from vtn.service import Vtn
from vtn.store import Participant

ROOT = Path(__file__).resolve().parents[1]


async def test_past_the_programs_connectivity_limit_an_error_and_one_notice(tmp_path, smtp, caplog):
    inbox, smtp_port = smtp
    async with running_site(tmp_path, SCALE, ("ven-a",)) as site:
        ensure_program(site.store, "managed_charging")     # [connectivity]: more than 3 events
        site.store.add_participant(Participant(participant_id="alice", name="Alice",
                                               household_id="h1", email="alice@example.org"))
        with site.store.session() as s:
            ven = site.store.ven("ven-a")
            ven.program_id, ven.participant_id = "managed_charging", "alice"
            s.add(ven)
            s.commit()
        config = site.vtn.config
        await site.vtn.stop()
        site.vtn = Vtn(dataclasses.replace(config, push_settings=FAST_RETRY),
                       site.store, SystemClock(),
                       notifier=EmailNotifier("127.0.0.1", smtp_port, "vtn@utility.example"))
        await site.vtn.start(run_ticker=False)      # no published notices: only connectivity
        agent, _ = await _push_agent(site, "ven-a")
        await eventually(lambda: not site.store.pending_messages("ven-a"), what="settled")
        await agent.link.push_server.stop()
        caplog.set_level(logging.ERROR, logger="vtn.push")
        events = [_publish(site, lead=(2 + i) * HOUR, duration=HOUR) for i in range(3)]
        await eventually(lambda: (_endpoint(site.store, "ven-a").attempts or 0) >= 2,
                         what="failed attempts")
        await asyncio.sleep(0.5)
        assert not site.store.notices(kind=CONNECTIVITY)      # 3 missed: within the limit
        events.append(_publish(site, lead=6 * HOUR, duration=HOUR))
        await eventually(lambda: site.store.notices(kind=CONNECTIVITY), what="notice")
        await asyncio.sleep(1.0)                              # more failures: still one
        notices = site.store.notices(kind=CONNECTIVITY)
        assert len(notices) == 1
        assert notices[0].event_id == events[3].event_id and notices[0].delivered
        assert [r for r in caplog.records if "unreachable" in r.getMessage()][:1]
        assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1
        assert "offline" in inbox.messages[-1][1]["Subject"]
        await agent.link.push_server.start()
        await eventually(lambda: not site.store.pending_messages("ven-a"), what="back")
        assert all(e.event_id in agent.decisions for e in events)


def _client_tls(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    context.check_hostname = False       # the VEN's certificate names the VEN, not a host
    context.load_cert_chain(str(cert), str(key))
    return context


async def test_the_push_endpoint_refuses_what_the_vtn_did_not_sign_and_replays(tmp_path):
    async with running_site(tmp_path, SCALE, ("ven-a", "ven-b")) as site:
        agent, received = await _push_agent(site, "ven-a")
        url = f"{agent.config.push.public_url}/EiReport"
        vtn, other = site.pki.vtn, site.pki.vens["ven-b"]

        def cancel(signer: MessageSigner, request_id: str) -> str:
            return signer("oadrCancelReport", vtn_id="TEST_VTN", ven_id="ven-a",
                          request_id=request_id, report_request_id="nothing",
                          report_to_follow=False)

        async def post(identity, body: str, content_type="application/xml"):
            tls = _client_tls(identity.cert, identity.key, site.pki.ca.cert)
            async with aiohttp.ClientSession() as session:
                async with session.post(url, data=body, ssl=tls,
                                        headers={"content-type": content_type}) as reply:
                    return reply.status, await reply.text()

        signed = cancel(MessageSigner.from_files(vtn.cert, vtn.key), "ok-1")
        status, answer = await post(vtn, signed)
        assert status == 200 and "oadrResponse" in answer and "<ei:responseCode>200" in answer
        assert (await post(vtn, signed))[0] == 403                       # a replay
        by_other = cancel(MessageSigner.from_files(other.cert, other.key), "other-1")
        assert (await post(other, by_other))[0] == 403                   # not the VTN's certificate
        assert (await post(vtn, by_other))[0] == 403                     # signed by another one
        assert (await post(vtn, signed.replace("nothing", "altered")))[0] == 403
        assert (await post(vtn, "<oadr"))[0] == 400
        assert (await post(vtn, signed, "text/plain"))[0] == 415
        with pytest.raises(aiohttp.ClientError):                         # no client certificate
            async with aiohttp.ClientSession() as session:
                plain = ssl.create_default_context(cafile=str(site.pki.ca.cert))
                plain.check_hostname = False
                await session.post(url, data=signed, ssl=plain)
        assert received.cancelled_reports() == ["nothing"]               # only the first one


def _ven_toml(tmp_path: Path, site_pki, extra: str) -> dict:
    import tomllib
    paths = site_pki.vens["ven-a"]
    return tomllib.loads(f"""
ven_name = "ven-a"
vtn_url = "https://127.0.0.1:9/OpenADR2/Simple/2.0b"
cert = "{paths.cert}"
key = "{paths.key}"
ca_file = "{site_pki.ca.cert}"
capacity_kwh = 13.5
{extra}
""")


@pytest.fixture
def pki(tmp_path):
    from certs.pki import ensure_dev_pki
    return ensure_dev_pki(tmp_path / "pki", ["ven-a"])


def test_ven_toml_push_mode(tmp_path, pki):
    config = agent_config(_ven_toml(tmp_path, pki, """
exchange = "push"
[push]
public_url = "https://ven-a.example:8443/OpenADR2/Simple/2.0b/"
listen_port = 8443
"""), tmp_path, "ven.toml")
    assert config.push.public_url == "https://ven-a.example:8443/OpenADR2/Simple/2.0b"
    assert (config.push.host, config.push.port) == ("0.0.0.0", 8443)
    assert agent_config(_ven_toml(tmp_path, pki, ""), tmp_path, "ven.toml").push is None


def test_ven_toml_xmpp_exchange(tmp_path, pki):
    (tmp_path / "pw").write_text("secret\n")
    config = agent_config(_ven_toml(tmp_path, pki, """exchange = "xmpp"
[xmpp]
server_host = "xmpp.example"
jid = "ven-a@xmpp.example/flexadr"
password_file = "pw"
vtn_jid = "vtn@xmpp.example/flexadr"
"""), tmp_path, "ven.toml")
    account = config.xmpp.account
    assert (account.host, account.port, account.jid, account.password) == (
        "xmpp.example", 5222, "ven-a@xmpp.example/flexadr", "secret")
    assert account.cert == pki.vens["ven-a"].cert and config.xmpp.vtn_jid.startswith("vtn@")
    assert config.push is None
    without_url = _ven_toml(tmp_path, pki, 'exchange = "xmpp"\n[xmpp]\nserver_host = "x"\n'
                            'jid = "ven-a@x/f"\npassword_file = "pw"\nvtn_jid = "vtn@x/f"')
    del without_url["vtn_url"]
    assert agent_config(without_url, tmp_path, "ven.toml").vtn_url == ""
    del without_url["exchange"], without_url["xmpp"]
    with pytest.raises(ConfigError, match="vtn_url"):
        agent_config(without_url, tmp_path, "ven.toml")


@pytest.mark.parametrize("extra, says", [
    ('exchange = "push"', 'needs a [push] table'),
    ('exchange = "xmpp"', "needs an [xmpp] table"),
    ('[xmpp]\nserver_host = "x"\njid = "a@b/c"\npassword_file = "pw"\nvtn_jid = "v@b/c"',
     'needs exchange = "xmpp"'),
    ('exchange = "xmpp"\n[xmpp]\nserver_host = "x"\njid = "a@b"\npassword_file = "pw"\n'
     'vtn_jid = "v@b/c"', "not a full JID"),
    ('[push]\npublic_url = "https://a.example/x"\nlisten_port = 1', 'needs exchange = "push"'),
    ('exchange = "push"\n[push]\npublic_url = "http://a.example/x"\nlisten_port = 1', "https://"),
    ('exchange = "push"\n[push]\npublic_url = "https://u:p@a.example/x"\nlisten_port = 1',
     "credentials"),
    ('exchange = "push"\n[push]\npublic_url = "https://a.example/x"\nlisten_prot = 1',
     "did you mean 'listen_port'"),
])
def test_ven_toml_push_mistakes_are_one_line(tmp_path, pki, extra, says):
    (tmp_path / "pw").write_text("secret\n")
    with pytest.raises(ConfigError) as err:
        agent_config(_ven_toml(tmp_path, pki, extra), tmp_path, "ven.toml")
    assert says in str(err.value) and "\n" not in str(err.value)


def test_ven_run_with_a_push_mistake_exits_2_with_one_line(tmp_path, pki):
    paths = pki.vens["ven-a"]
    path = tmp_path / "ven.toml"
    path.write_text(f"""ven_name = "ven-a"
vtn_url = "https://127.0.0.1:9/OpenADR2/Simple/2.0b"
cert = "{paths.cert}"
key = "{paths.key}"
ca_file = "{pki.ca.cert}"
capacity_kwh = 13.5
exchange = "push"
""")
    run = subprocess.run([sys.executable, "-m", "ven.cli", "run", "--config", str(path)],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "needs a [push] table" in run.stderr
