"""``Client`` and ``AsyncClient``: the same surface, sync and async, over httpx.

Typed with the server's own pydantic models. ``runs.events`` reconnects on a dropped connection
and resumes with ``Last-Event-ID``, so every event is yielded exactly once.
"""

from __future__ import annotations

import asyncio
import builtins
import io
import os
import tarfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from conclave.schema import ApiKey, Cost, Event, NewKey, Run, RunPage, RunStatus, TaskSpec

from .errors import BudgetExceeded, ConclaveError, ServiceUnavailable, error_for
from .reporting import AsyncSchedules, AsyncWebhooks, Schedules, Webhooks

__all__ = ["AsyncClient", "Client"]

_RETRYABLE = (httpx.TransportError,)


def _spec(spec: TaskSpec | Mapping[str, Any]) -> dict[str, Any]:
    """Validate on the client too: a bad spec fails here with the same field errors, no round trip."""
    model = spec if isinstance(spec, TaskSpec) else TaskSpec.model_validate(dict(spec))
    return model.model_dump(mode="json", exclude_none=True)


def _check(r: httpx.Response) -> Any:
    if r.is_success:
        return r.json() if r.content else None
    try:
        body = r.json()
    except ValueError:
        body = None
    raise error_for(r.status_code, body, f"HTTP {r.status_code}: {r.text[:200]}")


def _checked(run: Run) -> Run:
    if run.status is RunStatus.SUCCEEDED:
        return run
    detail = f"run {run.id} ended {run.status.value}" + (f": {run.stop_detail}" if run.stop_detail else "")
    if run.status is RunStatus.BUDGET_EXHAUSTED:
        raise BudgetExceeded(detail, code=run.exhausted_limit or "budget_exhausted")
    raise ConclaveError(detail, code=run.status.value)


def _headers(api_key: str | None) -> dict[str, str]:
    key = api_key or os.environ.get("CONCLAVE_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def _parse_sse(lines: list[str]) -> Event | None:
    data = [ln[6:] if ln.startswith("data: ") else ln[5:] for ln in lines if ln.startswith("data:")]
    return Event.model_validate_json("\n".join(data)) if data else None


def _extract(tar_bytes: bytes, dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    root = dest.resolve()
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:gz") as tf:
        for m in tf.getmembers():
            name = m.name.split("/", 1)[1] if m.name.startswith("workspace/") else m.name
            target = (dest / name).resolve()
            if not m.isfile() or not target.is_relative_to(root):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            f = tf.extractfile(m)
            target.write_bytes(f.read() if f else b"")
            out.append(target)
    return out


class _Runs:
    def __init__(self, http: httpx.Client) -> None:
        self._h = http

    def submit(self, spec: TaskSpec | Mapping[str, Any], *, idempotency_key: str | None = None) -> Run:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return Run.model_validate(_check(self._h.post("/v1/runs", json=_spec(spec), headers=headers)))

    def get(self, run_id: str) -> Run:
        return Run.model_validate(_check(self._h.get(f"/v1/runs/{run_id}")))

    def list(self, *, status: RunStatus | str | None = None, limit: int = 50, cursor: str | None = None) -> RunPage:
        params = {k: v for k, v in {"status": status, "limit": limit, "cursor": cursor}.items() if v is not None}
        return RunPage.model_validate(_check(self._h.get("/v1/runs", params=params)))

    def cancel(self, run_id: str) -> Run:
        return Run.model_validate(_check(self._h.post(f"/v1/runs/{run_id}/cancel"))["run"])

    def cost(self, run_id: str) -> Cost:
        return Cost.model_validate(_check(self._h.get(f"/v1/runs/{run_id}/cost")))

    def report(self, run_id: str) -> str:
        """The run's report (``report.md`` of its workspace), else its output."""
        r = self._h.get(f"/v1/runs/{run_id}/workspace/report.md")
        if r.status_code == 200 and r.content.strip():
            return r.text
        return self.get(run_id).output or ""

    def wait(
        self, run_id: str, *, timeout: float | None = None, poll: float = 0.25, raise_on_failure: bool = False
    ) -> Run:
        """The run once it has ended. With ``raise_on_failure`` an ending other than success raises
        (``BudgetExceeded`` for a spent budget, ``ConclaveError`` otherwise)."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            run = self.get(run_id)
            if run.status.terminal:
                return _checked(run) if raise_on_failure else run
            if end is not None and time.monotonic() > end:
                raise TimeoutError(f"run {run_id} still {run.status.value} after {timeout} s")
            time.sleep(poll)

    def events(self, run_id: str, *, after: int = 0, follow: bool = True, max_reconnects: int = 100) -> Iterator[Event]:
        last, failures = after, 0
        while True:
            try:
                with self._h.stream(
                    "GET",
                    f"/v1/runs/{run_id}/events",
                    params={"follow": str(follow).lower()},
                    headers={"Last-Event-ID": str(last)},
                    timeout=httpx.Timeout(30, read=60),
                ) as r:
                    if not r.is_success:
                        r.read()
                        _check(r)
                    buf: list[str] = []
                    for line in r.iter_lines():
                        if line:
                            buf.append(line)
                            continue
                        ev = _parse_sse(buf)
                        buf = []
                        if ev is None or ev.id <= last:
                            continue
                        last = ev.id
                        failures = 0
                        yield ev
                        if ev.type == "run.finished":
                            return
                if not follow or self.get(run_id).status.terminal and self.get(run_id).last_event_id <= last:
                    return
            except (*_RETRYABLE, ServiceUnavailable):
                failures += 1
                if failures > max_reconnects:
                    raise
                time.sleep(min(0.1 * 2**failures, 2.0))


class _Workspace:
    def __init__(self, http: httpx.Client) -> None:
        self._h = http

    def list(self, run_id: str) -> list[dict[str, Any]]:
        return list(_check(self._h.get(f"/v1/runs/{run_id}/workspace"))["files"])

    def read(self, run_id: str, path: str) -> bytes:
        r = self._h.get(f"/v1/runs/{run_id}/workspace/{path}")
        if not r.is_success:
            _check(r)
        return r.content

    def download(self, run_id: str, dest: str | os.PathLike[str]) -> builtins.list[Path]:
        r = self._h.get(f"/v1/runs/{run_id}/workspace.tar.gz")
        if not r.is_success:
            _check(r)
        return _extract(r.content, Path(dest))


class _Admin:
    """Admin routes: API keys (needs an admin key when auth is on)."""

    def __init__(self, http: httpx.Client) -> None:
        self._h = http

    def create_key(self, tenant: str, *, name: str = "", admin: bool = False) -> NewKey:
        body = {"tenant": tenant, "name": name, "admin": admin}
        return NewKey.model_validate(_check(self._h.post("/v1/admin/keys", json=body)))

    def list_keys(self, tenant: str | None = None) -> builtins.list[ApiKey]:
        params = {"tenant": tenant} if tenant else {}
        return [ApiKey.model_validate(k) for k in _check(self._h.get("/v1/admin/keys", params=params))]

    def revoke_key(self, key_id: str) -> ApiKey:
        return ApiKey.model_validate(_check(self._h.post(f"/v1/admin/keys/{key_id}/revoke")))


class Client:
    """``Client("http://127.0.0.1:8000", api_key=...)``; the key defaults to ``$CONCLAVE_API_KEY``."""

    def __init__(
        self, base_url: str = "http://127.0.0.1:8000", *, api_key: str | None = None, timeout: float = 60.0
    ) -> None:
        self._http = httpx.Client(base_url=base_url, headers=_headers(api_key), timeout=timeout)
        self.runs = _Runs(self._http)
        self.workspace = _Workspace(self._http)
        self.admin = _Admin(self._http)
        self.webhooks = Webhooks(self._http)
        self.schedules = Schedules(self._http)

    def models(self) -> list[str]:
        return [m["id"] for m in _check(self._http.get("/v1/models"))["data"]]

    def health(self) -> dict[str, Any]:
        return dict(_check(self._http.get("/healthz")))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _AsyncRuns:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self._h = http

    async def submit(self, spec: TaskSpec | Mapping[str, Any], *, idempotency_key: str | None = None) -> Run:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return Run.model_validate(_check(await self._h.post("/v1/runs", json=_spec(spec), headers=headers)))

    async def get(self, run_id: str) -> Run:
        return Run.model_validate(_check(await self._h.get(f"/v1/runs/{run_id}")))

    async def list(
        self, *, status: RunStatus | str | None = None, limit: int = 50, cursor: str | None = None
    ) -> RunPage:
        params = {k: v for k, v in {"status": status, "limit": limit, "cursor": cursor}.items() if v is not None}
        return RunPage.model_validate(_check(await self._h.get("/v1/runs", params=params)))

    async def cancel(self, run_id: str) -> Run:
        return Run.model_validate(_check(await self._h.post(f"/v1/runs/{run_id}/cancel"))["run"])

    async def cost(self, run_id: str) -> Cost:
        return Cost.model_validate(_check(await self._h.get(f"/v1/runs/{run_id}/cost")))

    async def report(self, run_id: str) -> str:
        r = await self._h.get(f"/v1/runs/{run_id}/workspace/report.md")
        if r.status_code == 200 and r.content.strip():
            return r.text
        return (await self.get(run_id)).output or ""

    async def wait(
        self, run_id: str, *, timeout: float | None = None, poll: float = 0.25, raise_on_failure: bool = False
    ) -> Run:
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            run = await self.get(run_id)
            if run.status.terminal:
                return _checked(run) if raise_on_failure else run
            if end is not None and time.monotonic() > end:
                raise TimeoutError(f"run {run_id} still {run.status.value} after {timeout} s")
            await asyncio.sleep(poll)

    async def events(
        self, run_id: str, *, after: int = 0, follow: bool = True, max_reconnects: int = 100
    ) -> AsyncIterator[Event]:
        last, failures = after, 0
        while True:
            try:
                async with self._h.stream(
                    "GET",
                    f"/v1/runs/{run_id}/events",
                    params={"follow": str(follow).lower()},
                    headers={"Last-Event-ID": str(last)},
                    timeout=httpx.Timeout(30, read=60),
                ) as r:
                    if not r.is_success:
                        await r.aread()
                        _check(r)
                    buf: list[str] = []
                    async for line in r.aiter_lines():
                        if line:
                            buf.append(line)
                            continue
                        ev = _parse_sse(buf)
                        buf = []
                        if ev is None or ev.id <= last:
                            continue
                        last = ev.id
                        failures = 0
                        yield ev
                        if ev.type == "run.finished":
                            return
                if not follow:
                    return
                run = await self.get(run_id)
                if run.status.terminal and run.last_event_id <= last:
                    return
            except (*_RETRYABLE, ServiceUnavailable):
                failures += 1
                if failures > max_reconnects:
                    raise
                await asyncio.sleep(min(0.1 * 2**failures, 2.0))


class _AsyncWorkspace:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self._h = http

    async def list(self, run_id: str) -> list[dict[str, Any]]:
        return list(_check(await self._h.get(f"/v1/runs/{run_id}/workspace"))["files"])

    async def read(self, run_id: str, path: str) -> bytes:
        r = await self._h.get(f"/v1/runs/{run_id}/workspace/{path}")
        if not r.is_success:
            _check(r)
        return r.content

    async def download(self, run_id: str, dest: str | os.PathLike[str]) -> builtins.list[Path]:
        r = await self._h.get(f"/v1/runs/{run_id}/workspace.tar.gz")
        if not r.is_success:
            _check(r)
        return await asyncio.to_thread(_extract, r.content, Path(dest))


class _AsyncAdmin:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self._h = http

    async def create_key(self, tenant: str, *, name: str = "", admin: bool = False) -> NewKey:
        body = {"tenant": tenant, "name": name, "admin": admin}
        return NewKey.model_validate(_check(await self._h.post("/v1/admin/keys", json=body)))

    async def list_keys(self, tenant: str | None = None) -> builtins.list[ApiKey]:
        params = {"tenant": tenant} if tenant else {}
        return [ApiKey.model_validate(k) for k in _check(await self._h.get("/v1/admin/keys", params=params))]

    async def revoke_key(self, key_id: str) -> ApiKey:
        return ApiKey.model_validate(_check(await self._h.post(f"/v1/admin/keys/{key_id}/revoke")))


class AsyncClient:
    def __init__(
        self, base_url: str = "http://127.0.0.1:8000", *, api_key: str | None = None, timeout: float = 60.0
    ) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, headers=_headers(api_key), timeout=timeout)
        self.runs = _AsyncRuns(self._http)
        self.workspace = _AsyncWorkspace(self._http)
        self.admin = _AsyncAdmin(self._http)
        self.webhooks = AsyncWebhooks(self._http)
        self.schedules = AsyncSchedules(self._http)

    async def models(self) -> list[str]:
        return [m["id"] for m in _check(await self._http.get("/v1/models"))["data"]]

    async def health(self) -> dict[str, Any]:
        return dict(_check(await self._http.get("/healthz")))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
