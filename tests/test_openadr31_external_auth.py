"""Trusting an external OAuth 2.0 server: its tokens (RS256, keys from its JWKS served over
real HTTP) are accepted for clients registered as external; a wrong audience, a foreign
key or an unregistered client is a 401, and the edge's own tokens keep working."""
import json
from datetime import datetime, timedelta, timezone

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import rsa

from flexadr.clock import SystemClock
from flexadr.demo import _free_port
from tests.test_openadr31_api import SECRET, Api31, enrol
from vtn.openadr31 import Server, Settings
from vtn.openadr31.auth import create_client

AUDIENCE, ISSUER = "https://vtn.example.org", "https://login.example.org"


@pytest.fixture
async def authority():
    """An authorization server's JWKS endpoint with one RSA key (kid k1)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))

    async def jwks(_request):
        return web.json_response({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]})
    app = web.Application()
    app.router.add_get("/jwks", jwks)
    async with TestServer(app, host="127.0.0.1") as server:    # a real socket
        yield key, str(server.make_url("/jwks"))


def external_token(key, client_id, scope, audience=AUDIENCE, kid="k1"):
    now = datetime.now(timezone.utc)
    return jwt.encode({"iss": ISSUER, "aud": audience, "client_id": client_id, "sub": "x",
                       "scope": scope, "iat": now, "exp": now + timedelta(minutes=5)},
                      key, algorithm="RS256", headers={"kid": kid})


async def test_tokens_of_a_trusted_authorization_server(store, authority):
    key, jwks_url = authority
    enrol(store, "ven-a")
    now = datetime.now(timezone.utc)
    create_client(store, "erp", "bl", now, external=True)
    create_client(store, "ven-a-ext", "ven", now, ven_id="ven-a", external=True)
    local_secret = create_client(store, "local-bl", "bl", now)[1]
    port = _free_port()
    server = Server(store, SystemClock(), Settings(
        token_secret=SECRET, port=port, jwks_url=jwks_url, audience=AUDIENCE,
        external_issuer=ISSUER))
    await server.start()
    api = Api31(f"http://127.0.0.1:{port}", aiohttp.ClientSession(), {"local-bl": local_secret})
    try:
        bl = external_token(key, "erp", "read_all write_events")
        _, vens = await api.call("GET", "/vens", token=bl, expect=200)
        assert [v["venName"] for v in vens] == ["ven-a"]
        # The VEN client's token: its own VEN only, and its role's scopes only.
        ven = external_token(key, "ven-a-ext", "read_ven_objects write_events")
        _, mine = await api.call("GET", "/vens", token=ven, expect=200)
        assert [v["id"] for v in mine] == ["ven-a"]
        await api.call("POST", "/events", token=ven, expect=403, json={
            "programID": "connected_solutions", "intervals": [{"id": 0, "payloads": []}]})

        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        for token in [external_token(key, "erp", "read_all", audience="someone-else"),
                      external_token(other, "erp", "read_all"),           # not the server's key
                      external_token(other, "erp", "read_all", kid="k9"),  # a key it lacks
                      external_token(key, "stranger", "read_all")]:        # not registered
            _, problem = await api.call("GET", "/vens", token=token, expect=401)
            assert problem["status"] == 401
        # External clients have no secret to trade here; local clients still do.
        await api.call("POST", "/auth/token", expect=401, data={
            "grant_type": "client_credentials", "client_id": "erp", "client_secret": "external"})
        await api.call("GET", "/vens", client="local-bl", expect=200)
    finally:
        await api.session.close()
        await server.stop()
