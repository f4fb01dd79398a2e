"""fetch_url connects to the address it checked: DNS rebinding, redirects and TLS.

The tests run the tool over a small laboratory network (``tests/_lab_network.py``, an ``httpcore`` network
backend): "public" addresses are routed to HTTP servers on 127.0.0.1, loopback is loopback, and a
connection asked for by *name* is resolved again through the test's resolver, as the operating
system would. The resolver can answer differently on each lookup. No packet leaves the machine.
"""

from __future__ import annotations

import ipaddress
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme

from conclave.core.workspace import Workspace
from conclave.tools import FetchSettings, ToolContext, ToolSettings
from conclave.tools.base import ToolResult, execute
from conclave.tools.fetch import FetchTool, _public
from tests._lab_network import LabNetwork, Resolver

PUBLIC = "93.184.215.14"  # a globally routed address; the lab network routes it to a local server
OTHER_PUBLIC = "151.101.1.1"


class Site:
    """A threaded HTTP(S) server on 127.0.0.1 that records what it was asked."""

    def __init__(self, pages: dict[str, tuple[int, dict[str, str], bytes]], tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[tuple[str, str]] = []  # (path, Host header)
        self.sni: list[str | None] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                site.requests.append((self.path, self.headers.get("Host", "")))
                status, headers, body = pages.get(self.path, (404, {}, b"not here"))
                self.send_response(status)
                for k, v in {"Content-Type": "text/plain", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            tls.sni_callback = lambda _sock, name, _ctx: self.sni.append(name)  # type: ignore[assignment]
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def internal() -> Iterator[Site]:
    """A service inside the cluster that must never be fetched."""
    s = Site({"/page": (200, {}, b"SECRET internal data"), "/secret": (200, {}, b"SECRET")})
    yield s
    s.close()


def _run(tool: FetchTool, url: str) -> ToolResult:
    import asyncio

    return asyncio.run(execute(tool, {"url": url}, ToolContext(workspace=Workspace())))


def _tool(resolver: Resolver, network: LabNetwork, **settings: object) -> FetchTool:
    return FetchTool(ToolSettings(fetch=FetchSettings.model_validate(settings)), resolver=resolver, network=network)


def test_a_rebinding_answer_never_reaches_the_second_address(internal: Site) -> None:
    """The name answers a public address when checked and 127.0.0.1 the next time: the tool
    connects to the public one it checked and never to loopback, and resolves the name only once."""
    public = Site({"/page": (200, {}, b"the public page")})
    try:
        resolver = Resolver({"rebind.test": [[PUBLIC], ["127.0.0.1"]]})
        net = LabNetwork({PUBLIC: public.port}, resolver)
        r = _run(_tool(resolver, net), f"http://rebind.test:{internal.port}/page")
    finally:
        public.close()
    assert not r.is_error, r.content
    assert "the public page" in r.content and "SECRET" not in r.content
    assert internal.requests == []
    assert net.connects == [(PUBLIC, internal.port)] and resolver.calls == ["rebind.test"]
    assert public.requests == [("/page", f"rebind.test:{internal.port}")]  # the Host header names the host


def test_every_redirect_hop_is_checked_and_pinned(internal: Site) -> None:
    port = internal.port
    public = Site(
        {
            "/to-private": (302, {"Location": f"http://intranet.test:{port}/secret"}, b""),
            "/to-loopback": (302, {"Location": f"http://127.0.0.1:{port}/secret"}, b""),
            "/to-rebinder": (302, {"Location": f"http://rebind2.test:{port}/page"}, b""),
            "/page": (200, {}, b"the public page"),
        }
    )
    try:
        resolver = Resolver(
            {
                "start.test": [[PUBLIC]],
                "intranet.test": [["10.1.2.3"]],
                "rebind2.test": [[OTHER_PUBLIC], ["127.0.0.1"]],
            }
        )
        net = LabNetwork({PUBLIC: public.port, OTHER_PUBLIC: public.port}, resolver)
        tool = _tool(resolver, net)
        private = _run(tool, f"http://start.test:{port}/to-private")
        loop = _run(tool, f"http://start.test:{port}/to-loopback")
        rebound = _run(tool, f"http://start.test:{port}/to-rebinder")
    finally:
        public.close()
    assert private.is_error and "'intranet.test' resolves to 10.1.2.3" in private.content
    assert loop.is_error and "'127.0.0.1' resolves to 127.0.0.1" in loop.content
    assert not rebound.is_error and "the public page" in rebound.content, rebound.content
    assert internal.requests == []
    assert all(not ipaddress.ip_address(host).is_private for host, _ in net.connects), net.connects


def test_tls_goes_to_the_checked_address_with_sni_and_certificate_of_the_name(internal: Site, tmp_path: Path) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("site.test").configure_cert(server_ctx)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    site = Site({"/page": (200, {}, b"over TLS")}, tls=server_ctx)
    try:
        resolver = Resolver({"site.test": [[PUBLIC], ["127.0.0.1"]], "other.test": [[PUBLIC]]})
        net = LabNetwork({PUBLIC: site.port}, resolver)
        tool = _tool(resolver, net, ca_bundle=str(bundle))
        ok = _run(tool, f"https://site.test:{internal.port}/page")
        wrong = _run(tool, f"https://other.test:{internal.port}/page")
    finally:
        site.close()
    assert not ok.is_error and "over TLS" in ok.content, ok.content
    assert site.sni[0] == "site.test" and site.requests == [("/page", f"site.test:{internal.port}")]
    # A certificate for another name is refused even though the address was allowed.
    assert wrong.is_error and "CERTIFICATE_VERIFY_FAILED" in wrong.content, wrong.content
    assert internal.requests == []


@pytest.mark.parametrize(
    ("addr", "public"),
    [
        ("93.184.215.14", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("100.64.0.1", False),  # shared address space (carrier NAT)
        ("169.254.169.254", False),  # cloud metadata
        ("192.0.2.1", False),  # documentation
        ("224.0.0.1", False),
        ("0.0.0.0", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped
        ("2002:7f00:1::", False),  # 6to4 around 127.0.0.1
    ],
)
def test_only_globally_reachable_addresses_count_as_public(addr: str, public: bool) -> None:
    assert _public(addr) is public
