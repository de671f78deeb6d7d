"""A Prosody (Debian's package) of a test or a benchmark, in a folder of its own.

On its own port on 127.0.0.1; TLS required (STARTTLS) and a client certificate of
the test CA; accounts with passwords (`prosodyctl register`); no s2s, no offline
storage (a message to an offline JID bounces at once). It presents the test VTN's
certificate, whose names include `localhost`: the XMPP domain.
"""
from __future__ import annotations

import secrets
import socket
import subprocess
import time
from pathlib import Path

from flexadr.demo import _free_port
from flexadr.xmpp import XmppSettings
from tests.conftest import daemon

DOMAIN = "localhost"


class Prosody:
    """A Prosody of this test: TLS required, client certificates of the test CA."""

    def __init__(self, root: Path, pki, users: list[str]):
        self.root, self.pki, self.port = root, pki, _free_port()
        self.passwords = {user: secrets.token_urlsafe(12) for user in users}
        self.config = root / "prosody.cfg.lua"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Prosody":
        (self.root / "data").mkdir()
        (self.root / "certs").mkdir()
        ssl_options = (f'certificate = "{self.pki.vtn.cert}", key = "{self.pki.vtn.key}", '
                       f'cafile = "{self.pki.ca.cert}", verify = {{ "peer", "fail_if_no_peer_cert" }}')
        self.config.write_text(f"""
pidfile = "{self.root / 'prosody.pid'}"
data_path = "{self.root / 'data'}"
certificates = "{self.root / 'certs'}"
run_as_root = true  -- the tests may run as root; the files are in the test's own folder
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {self.port} }}
c2s_direct_tls_ports = {{}}
s2s_ports = {{}}
http_ports = {{}}
https_ports = {{}}
modules_enabled = {{ "saslauth", "tls", "disco", "ping" }}
modules_disabled = {{ "s2s", "offline" }}
authentication = "internal_plain"
storage = "internal"
c2s_require_encryption = true
log = {{ {{ levels = {{ min = "info" }}, to = "file", filename = "{self.root / 'prosody.log'}" }} }}
VirtualHost "{DOMAIN}"
  ssl = {{ {ssl_options} }}
""")
        prosodyctl = str(Path(daemon("prosody")).with_name("prosodyctl"))
        for user, password in self.passwords.items():
            subprocess.run([prosodyctl, "--config", str(self.config), "register", user, DOMAIN,
                            password], check=True, capture_output=True, timeout=30)
        self.proc = subprocess.Popen([daemon("prosody"), "--config", str(self.config), "-F"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            assert self.proc.poll() is None, (self.root / "prosody.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                assert time.monotonic() < deadline, "prosody is not listening"
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    def account(self, user: str, cert: Path, key: Path, resource: str = "flexadr") -> XmppSettings:
        return XmppSettings("127.0.0.1", self.port, f"{user}@{DOMAIN}/{resource}",
                            self.passwords[user], cert, key, self.pki.ca.cert)
