"""Webhook delivery: POST the Notification to a subscription's callbackUrl.

A callback URL must pass vtn.operator_input.check_url (http(s), a host, no credentials, no
loopback / private / link-local literal) when it is subscribed and again when it is sent
to. A host name is resolved by `PinnedResolver`, which refuses the lot if any address is
not public and hands aiohttp exactly the addresses it checked: the connection goes to a
checked address, so a name that resolves to a public address when checked and to
169.254.169.254 a moment later (DNS rebinding) cannot steer the VTN into its own network.
Redirects are not followed.
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Sequence
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from vtn.openadr31.notify.outbox import Outcome
from vtn.operator_input import check_url, refuse_address
from vtn.store import Oadr3Delivery

CONCURRENCY = 64            # webhook POSTs in flight per VTN process


class RefusedAddress(OSError):
    """The callback's host resolves to an address the VTN must not call."""


class PinnedResolver(AbstractResolver):
    def __init__(self, allow_private: bool):
        self.allow_private = allow_private

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM, family=family)
        except socket.gaierror as err:
            raise OSError(f"{host} does not resolve: {err.strerror}") from None
        results = []
        for address_family, _, proto, _, sockaddr in infos:
            address = sockaddr[0].split("%", 1)[0]
            if not self.allow_private:
                try:
                    refuse_address(ipaddress.ip_address(address))
                except ValueError as err:
                    raise RefusedAddress(f"{host}: {err}") from None
            results.append({"hostname": host, "host": address, "port": sockaddr[1],
                            "family": address_family, "proto": proto,
                            "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV})
        return results

    async def close(self) -> None:
        return None


async def check_callback(url: str, allow_private: bool) -> None:
    """ValueError if the VTN may not call `url` (at subscription time). A name that does
    not resolve yet is accepted: it is resolved and checked again at every send."""
    check_url(url, allow_private)
    parts = urlsplit(url)
    try:
        await PinnedResolver(allow_private).resolve(
            parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
            socket.AF_UNSPEC)
    except RefusedAddress as err:
        raise ValueError(str(err)) from None
    except OSError:
        return


class WebhookSender:
    def __init__(self, timeout_s: float, allow_private: bool):
        self.allow_private = allow_private
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(resolver=PinnedResolver(self.allow_private),
                                         limit=CONCURRENCY)
        self.session = aiohttp.ClientSession(connector=connector, timeout=self.timeout)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def send_all(self, rows: Sequence[Oadr3Delivery]) -> list[Outcome]:
        return list(await asyncio.gather(*(self.send(row) for row in rows)))

    async def send(self, row: Oadr3Delivery) -> Outcome:
        try:
            check_url(row.target, self.allow_private)
        except ValueError as err:
            return Outcome(row.id, f"refused: {err}", permanent=True)
        headers = {"Content-Type": "application/json"}
        if row.bearer_token:
            headers["Authorization"] = f"Bearer {row.bearer_token}"
        try:
            async with self.session.post(row.target, data=row.body, headers=headers,
                                         allow_redirects=False) as response:
                if 200 <= response.status < 300:
                    return Outcome(row.id)
                return Outcome(row.id, f"HTTP {response.status}")
        except aiohttp.ClientConnectorError as err:
            refused = isinstance(err.os_error, RefusedAddress)
            return Outcome(row.id, f"refused: {err.os_error}" if refused else
                           f"cannot connect: {err.os_error}", permanent=refused)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as err:
            return Outcome(row.id, f"{type(err).__name__}: {err}")
