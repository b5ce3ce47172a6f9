"""The egress policy in front of every call whose address comes from data: a templated webhook
url, a browser's web-push endpoint.

The host is resolved here, every address it resolves to is judged by ``journeys.egress``, and
the connection goes to an address that was judged: httpcore's network backend is ours, so a
name that resolves to a public address when checked and to 127.0.0.1 a moment later (DNS
rebinding) cannot slip through. The request keeps the name: the Host header and TLS's SNI and
certificate check are the name's. No proxy from the environment (it would resolve the name
itself), no redirects, no user:password from the URL.

FCM, Twilio and SMTP are not behind it: their addresses come from settings the operator sets
(JOURNEYS_FCM_URL, JOURNEYS_TWILIO_URL, JOURNEYS_SMTP_HOST), not from a template or a user.
"""

from __future__ import annotations

import asyncio
import socket
import typing
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import httpcore
import httpx

from journeys.egress import IPAddress, Policy, Refused, check_name, check_url, literal_address
from journeys.settings import Settings

__all__ = ["Egress", "Refused", "Resolver", "system_resolver"]

#: A name's addresses, as text (``getaddrinfo``'s answer); tests inject one.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    """The system's answer for ``host`` (every address, IPv4 and IPv6)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class Egress:
    """The policy (allowed networks) and the resolver it trusts; makes the HTTP clients that obey it."""

    def __init__(self, policy: Policy, resolver: Resolver = system_resolver) -> None:
        self.policy = policy
        self.resolver = resolver

    @classmethod
    def from_settings(cls, settings: Settings) -> Egress:
        return cls(Policy.parse(settings.egress_allow))

    def check_url(self, url: str) -> None:
        """Refuse what the URL says by itself (scheme, user:password, a refused literal address)."""
        check_url(url, self.policy.allowed)

    async def addresses(self, host: str, port: int) -> list[IPAddress]:
        """The addresses ``host`` may be reached at; Refused if any of them may not (a name that
        resolves to a public and a private address is refused: either could be connected to)."""
        literal = check_name(host)
        if literal is not None:
            self.policy.check(literal)
            return [literal]
        try:
            answers = await self.resolver(host.rstrip("."), port)
        except OSError as exc:  # no such name, or DNS down: a later attempt may resolve it
            raise httpcore.ConnectError(f"cannot resolve the host: {exc}") from None
        found: list[IPAddress] = []
        for answer in answers:
            ip = literal_address(answer)
            if ip is None:
                raise Refused("malformed address")
            self.policy.check(ip)
            if ip not in found:
                found.append(ip)
        if not found:
            raise httpcore.ConnectError("the host resolves to no address")
        return found

    def transport(self, **options: Any) -> httpx.AsyncHTTPTransport:
        """An httpx transport whose connections go to checked addresses only (``options``: TLS
        ``verify``, ``limits``, ``http2`` as for httpx.AsyncHTTPTransport)."""
        verify = options.pop("verify", True)
        limits: httpx.Limits = options.pop("limits", httpx.Limits())
        transport = httpx.AsyncHTTPTransport(verify=verify, limits=limits, trust_env=False, **options)
        # httpx takes no network backend: its pool is made again with ours, as httpx makes it.
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry, http1=options.get("http1", True),
            http2=options.get("http2", False), network_backend=_CheckedBackend(self))
        return transport

    def client(self, timeout: float, **options: Any) -> httpx.AsyncClient:
        """An httpx client for data-given addresses: checked connections, no redirects, no proxy
        from the environment (it would resolve the name itself)."""
        return httpx.AsyncClient(timeout=httpx.Timeout(timeout), follow_redirects=False,
                                 trust_env=False, transport=self.transport(), **options)


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting to the checked addresses of a host, in turn."""

    def __init__(self, egress: Egress) -> None:
        self.egress = egress
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
                          ) -> httpcore.AsyncNetworkStream:
        failure: Exception | None = None
        for ip in await self.egress.addresses(host, port):
            try:
                return await self.inner.connect_tcp(str(ip), port, timeout=timeout,
                                                    local_address=local_address,
                                                    socket_options=socket_options)
            except httpcore.ConnectError as exc:  # the next address may answer
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        raise Refused("unix socket")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)
