"""``fetch_url``: HTTP(S) GET with size and time limits, HTML converted to text, archived into
``knowledge_base/sources/``.

The agent's requests run from inside the cluster, so the tool must not become a way into it:
hosts can be allow- and deny-listed, and addresses that are not public (private, loopback,
link-local, shared, reserved, multicast…) are refused unless the deployment allows them
(``allow_private``, or the host is on the allow-list).

The address that is checked is the address that is connected to. Every connection goes through
``CheckedBackend``, an ``httpcore`` network backend: it resolves the host once, refuses the
connection if any answer is not allowed, and connects to the checked address itself — the host name
is never handed to anything that would resolve it again, so a DNS answer that changes between the
check and the connection (DNS rebinding) has nothing to change. The URL keeps its host name, so the
``Host`` header, TLS SNI and certificate verification are for the name, as they should be. Redirects
are followed here, hop by hop: each hop's URL is checked and its connection goes through the same
backend.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import typing
from collections.abc import Awaitable, Callable
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx
from pydantic import BaseModel, ConfigDict, Field

from ._text import archive_source, html_to_text
from .base import Tool, ToolContext, ToolError, ToolResult
from .settings import FetchSettings, ToolSettings

__all__ = [
    "CheckedBackend",
    "FetchArgs",
    "FetchTool",
    "Resolver",
    "check_addresses",
    "host_matches",
    "system_resolver",
]

#: ``(host, port) → addresses``: how ``fetch_url`` resolves names (the system resolver by default).
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``getaddrinfo`` gives for ``host`` (in its order, without repeats)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ToolError(f"cannot resolve host {host!r}: {e.strerror}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class FetchArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2_000, description="http:// or https:// URL to fetch.")
    max_chars: int | None = Field(default=None, ge=100, le=100_000, description="Characters of text to return.")


def host_matches(host: str, patterns: list[str]) -> bool:
    """``example.com`` matches itself; ``.example.com`` matches its subdomains and itself."""
    host = host.lower().rstrip(".")
    for p in patterns:
        p = p.lower().rstrip(".")
        if host == p.lstrip(".") or (p.startswith(".") and host.endswith(p)):
            return True
    return False


def _public(addr: str) -> bool:
    """Whether ``addr`` is a globally reachable unicast address (IANA's "globally reachable"; so
    not private, loopback, link-local, shared 100.64/10, documentation, reserved, multicast)."""
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and not _public(str(embedded)):
            return False
    return ip.is_global and not ip.is_multicast


async def check_addresses(
    host: str, port: int, *, private_ok: bool = False, resolver: Resolver = system_resolver
) -> list[str]:
    """``host``'s addresses, resolved once; ``ToolError`` when there are none, or (unless
    ``private_ok``) when any of them is not globally reachable. The one address rule: connections
    (``CheckedBackend``) and callers that must refuse a destination before connecting (a webhook URL
    at submission) both ask it."""
    addrs = await resolver(host, port)
    if not addrs:
        raise ToolError(f"cannot resolve host {host!r}: no addresses")
    if not private_ok:
        for addr in addrs:
            if not _public(addr):
                raise ToolError(
                    f"host {host!r} resolves to {addr}, a private, loopback or reserved address; "
                    "such addresses are refused unless the deployment allows them"
                )
    return addrs


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """Connections only to addresses the policy allows, made to the very address that was checked.

    ``private_ok(host)`` says whether ``host`` may be private (an allow-listed host, or
    ``allow_private``); ``inner`` makes the actual connection (anyio's by default)."""

    def __init__(
        self,
        private_ok: Callable[[str], bool],
        resolver: Resolver = system_resolver,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.private_ok = private_ok
        self.resolver = resolver
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addrs = await check_addresses(host, port, private_ok=self.private_ok(host), resolver=self.resolver)
        error: Exception | None = None
        for addr in addrs:  # each of them checked above; the name is not resolved again
            try:
                return await self.inner.connect_tcp(addr, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                error = e
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise ToolError("fetch_url never connects to a Unix socket")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class _CheckedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport, with its connection pool built over a ``CheckedBackend`` (httpx 0.28 does
    not take a network backend itself; the pool it builds is replaced before any use)."""

    def __init__(self, backend: CheckedBackend, ssl_context: ssl.SSLContext, max_connections: int = 4) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            network_backend=backend,
            http1=True,
            http2=False,
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
        )


class FetchTool(Tool):
    name = "fetch_url"
    description = "Fetch a web page (HTML is converted to text); the page is also saved in knowledge_base/sources/."
    Args = FetchArgs

    def __init__(
        self,
        settings: ToolSettings | None = None,
        *,
        resolver: Resolver = system_resolver,
        network: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        """``resolver`` and ``network`` are how names are resolved and connections made (the
        system's by default; tests put a network of their own underneath)."""
        self.cfg: FetchSettings = (settings or ToolSettings()).fetch
        self.resolver = resolver
        self.network = network

    def private_ok(self, host: str) -> bool:
        return self.cfg.allow_private or host_matches(host, self.cfg.allow_hosts)

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = httpx.create_ssl_context(trust_env=False)
        if self.cfg.ca_bundle is not None:
            ctx.load_verify_locations(cafile=str(self.cfg.ca_bundle))
        return ctx

    async def check_url(self, url: str) -> None:
        """Refuse, with the reason, a URL this deployment does not allow (scheme, host lists); the
        addresses are checked when the connection is made (``CheckedBackend``)."""
        cfg = self.cfg
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ToolError(f"only http and https URLs can be fetched, not {parts.scheme or 'no scheme'!r}")
        host = parts.hostname
        if not host:
            raise ToolError(f"URL {url!r} has no host")
        if host_matches(host, cfg.deny_hosts):
            raise ToolError(f"host {host!r} is on the deny-list")
        listed = host_matches(host, cfg.allow_hosts)
        if cfg.allow_hosts and not listed:
            raise ToolError(f"host {host!r} is not on the allow-list ({', '.join(cfg.allow_hosts)})")

    async def check_destination(self, url: str) -> None:
        """``check_url`` and the addresses the host resolves to now (``check_addresses``): for a URL
        that must be refused before anything connects to it, such as a webhook at submission. The
        connection itself is checked again (``transport``)."""
        await self.check_url(url)
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as e:
            raise ToolError(f"URL {url!r} has a bad port: {e}") from None
        await check_addresses(host, port, private_ok=self.private_ok(host), resolver=self.resolver)

    def transport(self, *, max_connections: int = 4) -> httpx.AsyncHTTPTransport:
        """An httpx transport whose every connection goes through ``CheckedBackend`` under this tool's
        rules: the address connected to is the address checked (no DNS rebinding). A refused address
        raises ``ToolError`` from the request."""
        backend = CheckedBackend(self.private_ok, self.resolver, self.network)
        return _CheckedTransport(backend, self._ssl_context(), max_connections)

    async def _get(self, url: str) -> tuple[str, httpx.Response, bytes, bool]:
        cfg = self.cfg
        headers = {"User-Agent": cfg.user_agent, "Accept": "text/html,text/plain,application/json;q=0.9,*/*;q=0.5"}
        async with httpx.AsyncClient(
            transport=self.transport(), timeout=cfg.timeout_s, follow_redirects=False, trust_env=False
        ) as client:
            for _ in range(cfg.max_redirects + 1):
                await self.check_url(url)
                async with client.stream("GET", url, headers=headers) as resp:
                    if resp.is_redirect and "location" in resp.headers:
                        url = urljoin(url, resp.headers["location"])
                        continue
                    body = bytearray()
                    cut = False
                    async for chunk in resp.aiter_bytes():
                        body += chunk
                        if len(body) > cfg.max_bytes:
                            del body[cfg.max_bytes :]
                            cut = True
                            break
                    return url, resp, bytes(body), cut
        raise ToolError(f"more than {cfg.max_redirects} redirects")

    async def run(self, args: FetchArgs, ctx: ToolContext) -> ToolResult:
        cfg = self.cfg
        try:
            async with asyncio.timeout(cfg.timeout_s):
                url, resp, body, cut = await self._get(args.url.strip())
        except TimeoutError:
            raise ToolError(f"fetching {args.url} took longer than {cfg.timeout_s:g} s") from None
        except httpx.HTTPError as e:
            raise ToolError(f"fetching {args.url} failed: {type(e).__name__}: {e}") from None
        ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
        text = body.decode(resp.encoding or "utf-8", errors="replace")
        title = ""
        if ctype in ("text/html", "application/xhtml+xml") or (not ctype and "<html" in text[:1000].lower()):
            title, text = html_to_text(text)
        elif not (ctype.startswith("text/") or ctype in ("application/json", "application/xml", "")):
            raise ToolError(f"{url} is {ctype!r}, which cannot be shown as text")
        note = f"HTTP {resp.status_code}, {ctype or 'unknown type'}, {len(body)} bytes" + (" (cut)" if cut else "")
        path = archive_source(ctx.workspace, title=title or url, source=url, text=text, note=note)
        limit = args.max_chars or cfg.max_chars
        shown = text[:limit]
        more = f"\n[{len(text) - limit} more characters in {path}]" if len(text) > limit else ""
        head = f"{url} — {note}; saved to {path}\n"
        if title:
            head += f"title: {title}\n"
        return ToolResult(
            head + "\n" + shown + more,
            is_error=resp.status_code >= 400,
            data={"url": url, "status": resp.status_code, "bytes": len(body), "saved": path, "cut": cut},
        )
