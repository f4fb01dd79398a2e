"""How the SDK's transports behave against servers that misbehave: one that never answers and one that
answers something other than an event stream (small Starlette apps on 127.0.0.1, real HTTP)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from conclave.sdk import AsyncClient, Client, ConclaveError
from tests._http import serve_http


@pytest.fixture
def hanging_api() -> Iterator[str]:
    """``GET /v1/runs/{id}`` never answers (until the test ends)."""
    released = threading.Event()

    async def stuck(_: Request) -> Response:
        await asyncio.to_thread(released.wait, 60)
        return JSONResponse({"error": {"code": "gone", "message": "test over"}}, status_code=503)

    with serve_http(Starlette(routes=[Route("/v1/runs/{run_id}", stuck)])) as base:
        try:
            yield base
        finally:
            released.set()


def test_sync_wait_timeout_bounds_a_request_that_never_answers(hanging_api: str) -> None:
    # The client's own request timeout is longer: without the deadline the wait would end in
    # httpx.ReadTimeout once that ran out, not in the TimeoutError it promises.
    with Client(hanging_api, timeout=8) as c, pytest.raises(TimeoutError, match="run_x still unanswered after 0.5 s"):
        c.runs.wait("run_x", timeout=0.5)


async def test_async_wait_timeout_bounds_a_request_that_never_answers(hanging_api: str) -> None:
    async with AsyncClient(hanging_api, timeout=8) as c:
        with pytest.raises(TimeoutError, match="run_x still unanswered after 0.5 s"):
            await c.runs.wait("run_x", timeout=0.5)


@pytest.fixture
def html_api() -> Iterator[str]:
    """An events route that answers a web page (a misconfigured proxy), and a run route that is down."""

    async def page(_: Request) -> Response:
        return HTMLResponse("<html><body>Welcome to nginx</body></html>")

    async def down(_: Request) -> Response:
        return JSONResponse({"error": {"code": "unavailable", "message": "down"}}, status_code=503)

    routes = [Route("/v1/runs/{run_id}/events", page), Route("/v1/runs/{run_id}", down)]
    with serve_http(Starlette(routes=routes)) as base:
        yield base


def test_events_from_a_server_that_sends_no_event_stream_fail_at_once_and_say_so(html_api: str) -> None:
    with Client(html_api) as c, pytest.raises(ConclaveError) as ei:
        list(c.runs.events("run_x", max_reconnects=2))
    assert ei.value.code == "not_an_event_stream" and "text/html" in ei.value.message


async def test_async_events_from_a_server_that_sends_no_event_stream_fail_at_once(html_api: str) -> None:
    async with AsyncClient(html_api) as c:
        with pytest.raises(ConclaveError) as ei:
            async for _ in c.runs.events("run_x", max_reconnects=2):
                pass
    assert ei.value.code == "not_an_event_stream"
