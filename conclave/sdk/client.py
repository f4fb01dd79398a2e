"""``Client`` and ``AsyncClient``: one surface, sync and async, over httpx.

Both are the same resources (``runs``, ``workspace``, ``admin``, ``tenants``, ``threads``, ``approvals``) over a different transport: every call
is written once, in ``resources/`` over the request layer (``request.py``), and ``transport.py`` executes
it blocking or on the event loop. Typed with the server's own pydantic models (``conclave.schema``).
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from .request import Call, json_body
from .resource import Resource, TransportT, endpoint
from .resources import Admin, Approvals, Runs, Schedules, Tenants, Threads, Webhooks, Workspace
from .transport import AsyncTransport, SyncTransport

__all__ = ["AsyncClient", "Client"]

DEFAULT_URL = "http://127.0.0.1:8000"


def _headers(api_key: str | None) -> dict[str, str]:
    key = api_key or os.environ.get("CONCLAVE_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def _model_ids(r: httpx.Response) -> list[str]:
    return [str(m["id"]) for m in r.json()["data"]]


def models() -> Call[list[str]]:
    """The ids of the served models (``GET /v1/models``, OpenAI's shape)."""
    return Call("GET", "/v1/models", _model_ids)


def health() -> Call[dict[str, Any]]:
    """Liveness and queue depth (``GET /healthz``)."""
    return Call("GET", "/healthz", json_body)


class _Resources(Resource[TransportT]):
    """What both clients have: the top-level calls and one attribute per resource."""

    models = endpoint(models)
    health = endpoint(health)

    def __init__(self, transport: TransportT) -> None:
        super().__init__(transport)
        self.runs: Runs[TransportT] = Runs(transport)
        self.workspace: Workspace[TransportT] = Workspace(transport)
        self.admin: Admin[TransportT] = Admin(transport)
        self.tenants: Tenants[TransportT] = Tenants(transport)
        self.threads: Threads[TransportT] = Threads(transport)
        self.approvals: Approvals[TransportT] = Approvals(transport)
        self.webhooks: Webhooks[TransportT] = Webhooks(transport)
        self.schedules: Schedules[TransportT] = Schedules(transport)


class Client(_Resources[SyncTransport]):
    """``Client("http://127.0.0.1:8000", api_key=...)``; the key defaults to ``$CONCLAVE_API_KEY``.

    ``timeout`` (seconds) bounds each request; ``runs.wait(timeout=...)`` bounds a whole wait."""

    def __init__(self, base_url: str = DEFAULT_URL, *, api_key: str | None = None, timeout: float = 60.0) -> None:
        super().__init__(SyncTransport(httpx.Client(base_url=base_url, headers=_headers(api_key), timeout=timeout)))

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Resources[AsyncTransport]):
    """``AsyncClient("http://127.0.0.1:8000", api_key=...)``: ``Client``'s surface, every call awaited
    and ``runs.events`` an async iterator."""

    def __init__(self, base_url: str = DEFAULT_URL, *, api_key: str | None = None, timeout: float = 60.0) -> None:
        http = httpx.AsyncClient(base_url=base_url, headers=_headers(api_key), timeout=timeout)
        super().__init__(AsyncTransport(http))

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
