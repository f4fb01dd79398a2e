"""``fetch_url``: HTTP(S) GET with size and time limits, HTML converted to text, archived into
``knowledge_base/sources/``.

The agent's requests run from inside the cluster, so the tool must not become a way into it:
hosts can be allow- and deny-listed, and addresses that are private, loopback, link-local or
otherwise not public are refused unless the deployment allows them (``allow_private``, or the host
is on the allow-list). Every redirect hop is checked the same way. Known limit: the address is
checked when resolved here; a DNS answer that changes between this check and the connection
(DNS rebinding) is not caught.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urljoin, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field

from ._text import archive_source, html_to_text
from .base import Tool, ToolContext, ToolError, ToolResult
from .settings import FetchSettings, ToolSettings

__all__ = ["FetchArgs", "FetchTool", "host_matches"]


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
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast or ip.is_unspecified
    )


class FetchTool(Tool):
    name = "fetch_url"
    description = "Fetch a web page (HTML is converted to text); the page is also saved in knowledge_base/sources/."
    Args = FetchArgs

    def __init__(self, settings: ToolSettings | None = None) -> None:
        self.cfg: FetchSettings = (settings or ToolSettings()).fetch

    async def check_url(self, url: str) -> None:
        """Refuse, with the reason, a URL this deployment does not allow."""
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
        if cfg.allow_private or listed:
            return
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise ToolError(f"cannot resolve host {host!r}: {e.strerror}") from None
        for info in infos:
            addr = str(info[4][0])
            if not _public(addr):
                raise ToolError(
                    f"host {host!r} resolves to {addr}, a private, loopback or reserved address; "
                    "such addresses are refused unless the deployment allows them"
                )

    async def _get(self, url: str) -> tuple[str, httpx.Response, bytes, bool]:
        cfg = self.cfg
        headers = {"User-Agent": cfg.user_agent, "Accept": "text/html,text/plain,application/json;q=0.9,*/*;q=0.5"}
        async with httpx.AsyncClient(timeout=cfg.timeout_s, follow_redirects=False, trust_env=False) as client:
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
