"""A laboratory network for tests of the address rules (``fetch_url``, webhook deliveries): an
``httpcore`` network backend in which "public" addresses are routed to HTTP servers on 127.0.0.1,
loopback is loopback, and a connection asked for by *name* is resolved again through the test's
resolver, as the operating system would. The resolver can answer differently on each lookup (DNS
rebinding). No packet leaves the machine."""

from __future__ import annotations

import ipaddress
import typing

import httpcore

__all__ = ["LabNetwork", "Resolver"]


class Resolver:
    """Answers from a script: ``{host: [first answer, second answer, ...]}`` (the last repeats)."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        try:
            ipaddress.ip_address(host)
            return [host]
        except ValueError:
            pass
        self.calls.append(host)
        script = self.answers[host]
        return script[min(self.calls.count(host), len(script)) - 1]


class LabNetwork(httpcore.AsyncNetworkBackend):
    def __init__(self, routes: dict[str, int], resolver: Resolver) -> None:
        self.routes = routes
        self.resolver = resolver
        self.real = httpcore.AnyIOBackend()
        self.connects: list[tuple[str, int]] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects.append((host, port))
        try:
            ipaddress.ip_address(host)
        except ValueError:  # a name: the system resolves it (again) before connecting
            host = (await self.resolver(host, port))[0]
        if host in self.routes:
            return await self.real.connect_tcp("127.0.0.1", self.routes[host], timeout)
        if ipaddress.ip_address(host).is_loopback:
            return await self.real.connect_tcp(host, port, timeout)
        raise httpcore.ConnectError(f"{host} is unreachable from the lab network")

    async def sleep(self, seconds: float) -> None:
        await self.real.sleep(seconds)
