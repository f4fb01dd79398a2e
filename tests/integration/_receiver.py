"""A real webhook receiver for tests: an HTTP server on 127.0.0.1 that records every request and
answers as the test tells it to (fail the first N, hang until released, …)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests._http import serve_http


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class Receiver:
    url: str = ""
    fail_first: int = 0
    #: When set, the first request waits for ``release`` before it is answered (with a 503).
    hold_first: bool = False
    release: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)
    #: Set while the held first request waits for ``release`` (cleared once it is answered).
    holding: threading.Event = field(default_factory=threading.Event)
    requests: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self) -> list[Received]:
        return [r for r in self.requests if 200 <= r.answered < 300]


@contextlib.contextmanager
def receiver(answer: Callable[[int], int] | None = None, **kw: object) -> Iterator[Receiver]:
    """Serve a ``Receiver`` at ``<url>/hook`` until the block ends."""
    rec = Receiver(**kw)  # type: ignore[arg-type]

    async def hook(request: Request) -> Response:
        body = await request.body()
        with rec._lock:
            n = len(rec.requests)
            status = 204
            if answer is not None:
                status = answer(n)
            elif n < rec.fail_first:
                status = 500
            if rec.hold_first and n == 0:
                status = 503
            rec.requests.append(Received({k.lower(): v for k, v in request.headers.items()}, body, status))
        if rec.hold_first and n == 0:
            rec.holding.set()
            rec.arrived.set()
            await asyncio.to_thread(rec.release.wait, 60)
            rec.holding.clear()
        rec.arrived.set()
        return Response(status_code=status)

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    with serve_http(app) as base:
        rec.url = f"{base}/hook"
        try:
            yield rec
        finally:
            rec.release.set()
