"""Users, roles and per-user API tokens: `vtn users ...` and the admin API's role checks."""
import io
import logging
from datetime import datetime, timezone

import aiohttp
import pytest

from certs.pki import ensure_dev_pki
from flexadr.clock import ManualClock
from flexadr.demo import _free_port
from vtn import audit, auth
from vtn.cli import main
from vtn.service import Vtn, VtnConfig
from vtn.store import User
from tests.test_cli import vtn_toml  # noqa: F401  (fixture)

LEGACY = "legacy-shared-admin-token"
NOW = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)
TIMEOUT = aiohttp.ClientTimeout(total=10)
PASSWORD = "correct horse battery"


def _cli(capsys, monkeypatch, *argv, stdin=""):
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_users_cli_adds_lists_changes_and_audits(vtn_toml, store, capsys, monkeypatch):
    config = ["--config", str(vtn_toml)]
    code, out, _ = _cli(capsys, monkeypatch, "users", "add", "olga", "--role", "operator",
                        "--password-stdin", *config, stdin=PASSWORD + "\n")
    assert code == 0 and "olga (operator)" in out
    code, out, _ = _cli(capsys, monkeypatch, "users", "token", "olga", "--name", "grafana",
                        *config)
    token = out.strip()
    assert code == 0 and token.startswith(auth.TOKEN_PREFIX)
    assert auth.token_principal(store, token) == auth.Principal("olga", "operator", "token")
    code, out, _ = _cli(capsys, monkeypatch, "users", "set-role", "olga", "viewer", *config)
    assert code == 0 and auth.token_principal(store, token).role == "viewer"
    code, out, _ = _cli(capsys, monkeypatch, "users", "disable", "olga", *config)
    assert code == 0 and auth.token_principal(store, token) is None
    code, out, _ = _cli(capsys, monkeypatch, "users", "list", *config)
    assert code == 0 and out.startswith("olga\tviewer\tdisabled")
    with store.session() as s:
        rows = audit.query(s, subject_type="user", subject_id="olga")
        stored = s.get(User, "olga")
    assert [r.action for r in rows] == ["user.add", "user.token", "user.set-role",
                                        "user.disable"]
    assert all(r.actor.startswith("cli:") for r in rows)
    assert '"role": "operator"' in rows[2].before and '"role": "viewer"' in rows[2].after
    # Neither the password, its hash nor the token is kept anywhere readable.
    assert stored.password_hash.startswith("$argon2id$")
    assert not any(secret in (r.before or "") + (r.after or "")
                   for r in rows for secret in (PASSWORD, stored.password_hash, token))


def test_users_cli_refuses_bad_input_with_one_line(vtn_toml, store, capsys, monkeypatch):
    config = ["--config", str(vtn_toml)]
    cases = [(("users", "add", "bob", "--role", "viewer", "--password-stdin"), "short\n",
              "at least 10 characters"),
             (("users", "add", "bad name!", "--role", "viewer", "--password-stdin"),
              PASSWORD + "\n", "a username is"),
             (("users", "set-role", "nobody", "admin"), "", "no user nobody"),
             (("users", "token", "nobody"), "", "no user nobody")]
    for argv, stdin, message in cases:
        code, _, err = _cli(capsys, monkeypatch, *argv, *config, stdin=stdin)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    code, _, _ = _cli(capsys, monkeypatch, "users", "add", "bob", "--role", "viewer",
                      "--password-stdin", *config, stdin=PASSWORD + "\n")
    code, _, err = _cli(capsys, monkeypatch, "users", "add", "bob", "--role", "admin",
                        "--password-stdin", *config, stdin=PASSWORD + "\n")
    assert code == 2 and "exists already" in err
    assert [u.role for u in auth.users(store)] == ["viewer"]


@pytest.fixture
async def api(tmp_path, store):
    pki = ensure_dev_pki(tmp_path / "pki", [])
    admin_port = _free_port()
    clock = ManualClock(NOW)
    vtn = Vtn(VtnConfig("TEST_VTN", "127.0.0.1", _free_port(), pki.vtn.cert, pki.vtn.key,
                        pki.ca.cert, admin_token=LEGACY, admin_port=admin_port), store, clock)
    tokens = {}
    for role in ("viewer", "operator", "admin"):
        auth.add_user(store, role, PASSWORD, role, actor="test", clock=clock)
        tokens[role] = auth.issue_token(store, role, "", actor="test", clock=clock)
    await vtn.start(run_ticker=False)
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{admin_port}",
                                     timeout=TIMEOUT) as session:
        yield session, tokens, clock
    await vtn.stop()


async def _status(session, method, path, token, json=None):
    async with session.request(method, path, json=json,
                               headers={"Authorization": f"Bearer {token}"}) as response:
        return response.status


async def test_roles_are_enforced_per_route(api, store):
    session, tokens, clock = api
    # (method, path, least role); the operator's and admin's calls reach the handler (404
    # for the unknown VEN / event, 200 for the program), the others stop at 403.
    routes = [("GET", "/api/vens", "viewer", 200), ("GET", "/metrics", "viewer", 200),
              ("POST", "/api/vens/nope/disable", "operator", 404),
              ("POST", "/api/events/nope/cancel", "operator", 404),
              ("PATCH", "/api/events/nope", "operator", 400),   # {} changes nothing: a 400
              ("PUT", "/api/programs/connected_solutions", "admin", 200)]
    ranks = ["viewer", "operator", "admin"]
    for method, path, least, allowed in routes:
        for role in ranks:
            status = await _status(session, method, path, tokens[role], json={})
            expected = allowed if ranks.index(role) >= ranks.index(least) else 403
            assert status == expected, (method, path, role, status)


async def test_bad_token_and_disabled_user_get_401(api, store):
    session, tokens, clock = api
    assert await _status(session, "GET", "/api/vens", "fxa_not-a-token") == 401
    assert await _status(session, "GET", "/api/vens", tokens["operator"]) == 200
    auth.set_disabled(store, "operator", True, actor="admin", clock=clock)
    assert await _status(session, "GET", "/api/vens", tokens["operator"]) == 401
    auth.set_disabled(store, "operator", False, actor="admin", clock=clock)
    assert await _status(session, "GET", "/api/vens", tokens["operator"]) == 200


async def test_legacy_token_is_an_admin_with_one_deprecation_warning(api, caplog):
    session, _, _ = api
    with caplog.at_level(logging.WARNING, logger="vtn.admin"):
        for _ in range(3):
            assert await _status(session, "PUT", "/api/programs/connected_solutions",
                                 LEGACY) == 200
    assert sum("deprecated" in r.getMessage() for r in caplog.records) == 1


def test_sessions_end_at_logout_disable_and_expiry(store):
    clock = ManualClock(NOW)
    auth.add_user(store, "olga", PASSWORD, "operator", actor="test", clock=clock)
    assert auth.login(store, "olga", "wrong password", NOW) is None
    assert auth.login(store, "nobody", PASSWORD, NOW) is None
    first, second = (auth.login(store, "olga", PASSWORD, NOW) for _ in range(2))
    principal, csrf = auth.session_principal(store, first, NOW)
    assert principal.role == "operator" and csrf
    auth.logout(store, first)
    assert auth.session_principal(store, first, NOW) is None
    assert auth.session_principal(store, second, NOW + auth.SESSION_TTL) is None
    assert auth.session_principal(store, second, NOW) is not None
    auth.set_disabled(store, "olga", True, actor="test", clock=clock)
    assert auth.session_principal(store, second, NOW) is None
    assert auth.login(store, "olga", PASSWORD, NOW) is None
