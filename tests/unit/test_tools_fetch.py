"""fetch_url against a local HTTP server: loopback refused unless allowed, limits, HTML to text."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conclave.core.workspace import Workspace
from conclave.tools import FetchSettings, ToolContext, ToolSettings
from conclave.tools.base import execute
from conclave.tools.fetch import FetchTool, host_matches


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/page":
            body = (
                b"<html><head><title>T</title><style>x{}</style></head><body><h1>Hello</h1><p>world</p></body></html>"
            )
            self._send(200, "text/html; charset=utf-8", body)
        elif self.path == "/big":
            self._send(200, "text/plain", b"y" * 50_000)
        elif self.path == "/bin":
            self._send(200, "application/octet-stream", b"\x00\x01")
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://localhost.test.invalid/x")
            self.end_headers()
        else:
            self._send(404, "text/plain", b"not here")

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def tool(**kw: object) -> FetchTool:
    return FetchTool(ToolSettings(fetch=FetchSettings.model_validate(kw)))


async def test_loopback_is_refused_by_default(server: str) -> None:
    r = await execute(tool(), {"url": server + "/page"}, ToolContext(workspace=Workspace()))
    assert r.is_error and "resolves to 127.0.0.1, a private, loopback or reserved address" in r.content


async def test_allowed_host_is_fetched_as_text_and_archived(server: str) -> None:
    ws = Workspace()
    r = await execute(tool(allow_hosts=["127.0.0.1"]), {"url": server + "/page"}, ToolContext(workspace=ws))
    assert not r.is_error, r.content
    assert "title: T" in r.content and "# Hello\n\nworld" in r.content and "x{}" not in r.content
    (saved,) = ws.list("knowledge_base/sources")
    assert "source: " + server + "/page" in ws.read(saved)


async def test_limits_and_refusals(server: str) -> None:
    t = tool(allow_private=True, max_bytes=10_000, max_chars=500)
    c = ToolContext(workspace=Workspace())
    r = await execute(t, {"url": server + "/big"}, c)
    assert "10000 bytes (cut)" in r.content and "more characters in knowledge_base/sources/" in r.content
    r = await execute(t, {"url": server + "/bin"}, c)
    assert r.is_error and "cannot be shown as text" in r.content
    r = await execute(t, {"url": server + "/missing"}, c)
    assert r.is_error and "HTTP 404" in r.content
    r = await execute(t, {"url": "file:///etc/passwd"}, c)
    assert r.is_error and "only http and https" in r.content
    r = await execute(tool(allow_private=True, deny_hosts=["127.0.0.1"]), {"url": server + "/page"}, c)
    assert r.is_error and "deny-list" in r.content
    r = await execute(tool(allow_hosts=["127.0.0.1"]), {"url": server + "/redirect"}, c)
    assert r.is_error and "'localhost.test.invalid' is not on the allow-list" in r.content
    r = await execute(tool(allow_hosts=["example.org"]), {"url": server + "/page"}, c)
    assert r.is_error and "not on the allow-list" in r.content


def test_host_patterns() -> None:
    assert host_matches("a.example.com", [".example.com"]) and host_matches("example.com", [".example.com"])
    assert not host_matches("badexample.com", [".example.com"]) and host_matches("X.org.", ["x.org"])
