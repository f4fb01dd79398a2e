"""The HTTP API: runs, their events (SSE), cost, and — mounted by the ingress — the OpenAI-compatible
chat endpoint. The app holds no state of its own: everything is in Redis, so any replica answers
any request.
"""

import logging
import mimetypes
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from conclave import telemetry
from conclave.agents.workspace import PathError, Workspace, confine, load_workspace, workspace_tarball
from conclave.api.auth import Authenticator, KeyStore, Tenant, install_authenticator
from conclave.api.errors import ApiError, ErrorResponse, install_error_handlers
from conclave.api.limits import DEFAULT_MAX_BODY_BYTES, BodyLimit
from conclave.config import Settings
from conclave.controller.kinds import register_kinds, validate_spec
from conclave.controller.store import RunStore, spec_hash
from conclave.schema import Cost, Event, Run, RunPage, RunStatus, TaskSpec
from conclave.tools import configure as configure_tools

__all__ = ["Services", "create_app"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = DEFAULT_MAX_BODY_BYTES

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse},
    404: {"model": ErrorResponse},
    409: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
    503: {"model": ErrorResponse},
}


class Services:
    """Connections the API needs, opened lazily in the serving process (Serve replicas pickle the
    app builder, not live sockets)."""

    def __init__(self, settings: Settings, redis_url: str) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self._store: RunStore | None = None
        register_kinds(settings.kinds)
        configure_tools(settings.tools)  # submit-time checks need to know the MCP servers

    @property
    def store(self) -> RunStore:
        if self._store is None:
            from conclave.controller.worker import connect

            self._store = RunStore(
                connect(self.redis_url), self.settings.key_prefix, binary=connect(self.redis_url, decode=False)
            )
        return self._store

    @property
    def keys(self) -> KeyStore:
        return KeyStore(self.store.r, self.settings.key_prefix)

    async def close(self) -> None:
        if self._store is not None:
            await self._store.r.aclose()
            await self._store.rb.aclose()
            self._store = None


class WorkspaceFile(BaseModel):
    path: str
    size: int
    lines: int


class WorkspaceListing(BaseModel):
    run_id: str
    files: list[WorkspaceFile]
    total_bytes: int


class CancelResult(BaseModel):
    run: Run
    result: str


def runs_router(services: Services) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["runs"], responses=ERRORS)

    async def _get(run_id: str, tenant: str) -> Run:
        run = await services.store.get(run_id, tenant=tenant)
        if run is None:
            raise ApiError(404, "run_not_found", f"no run {run_id!r}")
        return run

    @r.post("/runs", response_model=Run, status_code=201, summary="Submit a task")
    async def submit(
        spec: TaskSpec,
        response: Response,
        tenant: Tenant,
        idempotency_key: Annotated[str | None, Header(max_length=256)] = None,
    ) -> Run:
        """Queue a run. With an ``Idempotency-Key`` header (or ``idempotency_key`` in the body) a
        repeated submission returns the first run (200) instead of creating another."""
        if idempotency_key:
            spec = spec.model_copy(update={"idempotency_key": idempotency_key})
        validate_spec(spec, services.settings.model_names())
        run, created, h = await services.store.submit(spec, tenant=tenant, trace=telemetry.carrier())
        if not created:
            if h != spec_hash(spec):
                raise ApiError(
                    409,
                    "idempotency_conflict",
                    f"idempotency key {spec.idempotency_key!r} was used for a different task (run {run.id})",
                )
            response.status_code = 200
        else:
            await services.store.durable()
        return run

    @r.get("/runs", response_model=RunPage, summary="List runs, newest first")
    async def list_runs(
        tenant: Tenant,
        status: RunStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(pattern=r"^\d+:[A-Za-z0-9_]+$")] = None,
    ) -> RunPage:
        return await services.store.list_runs(tenant=tenant, status=status, limit=limit, cursor=cursor)

    @r.get("/runs/{run_id}", response_model=Run, summary="Get a run")
    async def get_run(run_id: str, tenant: Tenant) -> Run:
        return await _get(run_id, tenant)

    @r.get("/runs/{run_id}/cost", response_model=Cost, summary="A run's cost breakdown")
    async def get_cost(run_id: str, tenant: Tenant) -> Cost:
        run = await _get(run_id, tenant)
        if run.cost is not None:
            return run.cost
        from conclave.budgets.ledger import Ledger

        store = services.store
        return await Ledger(store.r, store.scripts, store.p, run_id).cost()

    @r.post("/runs/{run_id}/cancel", response_model=CancelResult, status_code=202, summary="Cancel a run")
    async def cancel(run_id: str, tenant: Tenant) -> CancelResult:
        """A queued run is cancelled at once; a running one is told within a second and ends with
        its partial result. Cancelling a finished run changes nothing."""
        result = await services.store.cancel(run_id, tenant=tenant)
        if result == "missing":
            raise ApiError(404, "run_not_found", f"no run {run_id!r}")
        return CancelResult(run=await _get(run_id, tenant), result=result)

    @r.get(
        "/runs/{run_id}/events",
        summary="Stream a run's events (Server-Sent Events)",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def events(
        run_id: str,
        request: Request,
        tenant: Tenant,
        last_event_id: Annotated[str | None, Header()] = None,
        after: Annotated[int | None, Query(ge=0, description="Resume after this event id.")] = None,
        follow: bool = True,
    ) -> StreamingResponse:
        """Each event is ``id: <n>``, ``event: <type>``, ``data: <Event JSON>``. Reconnect with
        ``Last-Event-ID`` (or ``?after=``) to resume exactly after that event. The stream ends after
        ``run.finished`` (or at once with ``follow=false``)."""
        await _get(run_id, tenant)
        start = after
        if start is None and last_event_id:
            try:
                start = int(last_event_id.split("-", 1)[0])
            except ValueError:
                raise ApiError(
                    422, "invalid_request", f"Last-Event-ID: expected an event id, got {last_event_id!r}"
                ) from None
        return StreamingResponse(
            _sse(services.store, run_id, start or 0, follow, request),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @r.get("/runs/{run_id}/workspace", response_model=WorkspaceListing, summary="List a run's workspace")
    async def workspace_list(run_id: str, tenant: Tenant) -> WorkspaceListing:
        """Every file of the run's committed workspace, with sizes and line counts."""
        await _get(run_id, tenant)
        files = await load_workspace(services.store.rb, services.store.p, run_id)
        entries = Workspace(files).entries("", recursive=True) if files else []
        return WorkspaceListing(
            run_id=run_id,
            files=[WorkspaceFile(path=e.path, size=e.size, lines=e.lines) for e in entries if not e.is_dir],
            total_bytes=sum(len(v) for v in files.values()),
        )

    @r.get(
        "/runs/{run_id}/workspace.tar.gz",
        summary="Download a run's workspace",
        response_class=Response,
        responses={200: {"content": {"application/gzip": {}}}},
    )
    async def workspace_tar(run_id: str, tenant: Tenant) -> Response:
        await _get(run_id, tenant)
        files = await load_workspace(services.store.rb, services.store.p, run_id)
        return Response(
            workspace_tarball(files),
            media_type="application/gzip",
            headers={"Content-Disposition": f'attachment; filename="{run_id}-workspace.tar.gz"'},
        )

    @r.get(
        "/runs/{run_id}/workspace/{path:path}",
        summary="Read one workspace file",
        response_class=Response,
        responses={200: {"content": {"application/octet-stream": {}}}},
    )
    async def workspace_file(run_id: str, path: str, tenant: Tenant) -> Response:
        await _get(run_id, tenant)
        try:
            p = confine(path)
        except PathError as e:
            raise ApiError(
                422, "invalid_path", str(e), [{"field": "path", "message": str(e), "value": path[:120]}]
            ) from None
        data = await services.store.rb.hget(f"{services.store.run_key(run_id)}:ws", p)
        if data is None:
            raise ApiError(404, "file_not_found", f"no file {p!r} in the workspace of run {run_id}")
        media = mimetypes.guess_type(p)[0] or ("text/markdown" if p.endswith(".md") else "application/octet-stream")
        if media.startswith("text/"):
            media += "; charset=utf-8"
        return Response(bytes(data), media_type=media)

    return r


def format_sse(e: Event) -> str:
    return f"id: {e.id}\nevent: {e.type}\ndata: {e.model_dump_json()}\n\n"


async def _sse(store: RunStore, rid: str, after: int, follow: bool, request: Request) -> AsyncIterator[str]:
    last = after
    idle = 0.0
    while True:
        batch = await store.events(rid, after=last, count=500, block_ms=1000 if follow else None)
        for e in batch:
            last = e.id
            yield format_sse(e)
            if e.type == "run.finished":
                return
        if not follow and len(batch) < 500:
            return
        if batch:
            idle = 0.0
            continue
        if await request.is_disconnected():
            return
        idle += 1.0
        if idle >= 15:
            idle = 0.0
            yield ": keep-alive\n\n"
        run = await store.get(rid)
        if run is not None and run.status.terminal and run.last_event_id <= last:
            return


def create_app(settings: Settings, redis_url: str, *, extra_routers: list[APIRouter] | None = None) -> FastAPI:
    services = Services(settings, redis_url)
    telemetry.setup_telemetry("conclave-api")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await services.close()

    app = FastAPI(
        title="Conclave",
        version="0.1.0",
        description="Budget-tracked agent runs, ensembles and an OpenAI-compatible endpoint.",
        lifespan=lifespan,
        # One schema per model: the -Input/-Output pairs FastAPI would make differ only in their refs
        # (SubBudget nests itself), and client generators refuse the duplicate names they map to.
        separate_input_output_schemas=False,
    )
    app.state.services = services
    install_authenticator(app, Authenticator(enabled=settings.auth, keys=lambda: services.keys))
    install_error_handlers(app)

    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)  # every body, declared or chunked

    app.include_router(runs_router(services))
    for router in extra_routers or []:
        app.include_router(router)

    @app.get("/healthz", tags=["service"], summary="Liveness and queue depth")
    async def healthz() -> dict[str, Any]:
        depth = await services.store.queue_depth()
        return {"status": "ok", "queue": depth}

    return app
