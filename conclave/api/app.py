"""The HTTP API: runs, their events (SSE), cost, workspaces, the admin routes, and — mounted by the
ingress — the OpenAI-compatible chat endpoint.

HTTP wiring only: every route translates a request into one ``RunService`` call and its answer (or
``ServiceError``) into a response. The app holds no state of its own: everything is in the run store, so
any replica answers any request.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from conclave.config import Settings
from conclave.controller.errors import Conflict, Forbidden, InvalidInput, NotFound, ServiceError
from conclave.controller.service import RunService
from conclave.controller.setup import configure_runtime
from conclave.core import telemetry
from conclave.core.store import RunStore
from conclave.schema import (
    THREAD_ID_PATTERN,
    ApiKey,
    CancelResponse,
    Cost,
    Event,
    NewKey,
    NewKeyRequest,
    Run,
    RunPage,
    RunStatus,
    TaskSpec,
    WorkspaceListing,
)

from .auth import AdminDep, Authenticator, CallerDep, install_authenticator
from .console import mount_console
from .deps import ERRORS
from .errors import ApiError, install_error_handlers
from .limits import DEFAULT_MAX_BODY_BYTES, BodyLimit
from .metrics import metrics_router
from .schedules import schedules_router
from .steer import steer_router
from .tenants import tenants_router
from .webhooks import webhooks_router

__all__ = ["Services", "create_app"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = DEFAULT_MAX_BODY_BYTES

_STATUS: dict[type[ServiceError], int] = {NotFound: 404, Conflict: 409, InvalidInput: 422, Forbidden: 403}


class Services:
    """The service the routes call, opened lazily in the serving process (Serve replicas pickle the app
    builder, not live sockets). A test or an embedding can hand in a ready store instead of a URL."""

    def __init__(self, settings: Settings, redis_url: str | None = None, *, store: RunStore | None = None) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self._store = store
        self._service: RunService | None = None
        configure_runtime(settings)  # submit-time checks need the kinds and the MCP servers

    @property
    def service(self) -> RunService:
        if self._service is None:
            if self._store is None:
                from conclave.controller.redis_store import RedisRunStore
                from conclave.controller.worker import connect

                if not self.redis_url:
                    raise RuntimeError("the API needs a run store or a Redis URL")
                url = self.redis_url
                self._store = RedisRunStore(connect(url), self.settings.key_prefix, binary=connect(url, decode=False))
            self._service = RunService(self._store, self.settings)
        return self._service

    async def close(self) -> None:
        if self._store is not None and self.redis_url:
            await self._store.close()
            self._store = None
            self._service = None


def runs_router(services: Services) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["runs"], responses=ERRORS)

    @r.post("/runs", response_model=Run, status_code=201, summary="Submit a task")
    async def submit(
        spec: TaskSpec,
        response: Response,
        caller: CallerDep,
        idempotency_key: Annotated[str | None, Header(max_length=256)] = None,
    ) -> Run:
        """Queue a run. With an ``Idempotency-Key`` header (or ``idempotency_key`` in the body) a
        repeated submission returns the first run (200) instead of creating another."""
        run, created = await services.service.submit(
            spec,
            tenant=caller.tenant,
            idempotency_key=idempotency_key,
            trace=telemetry.carrier(),
            key_id=caller.key_id if caller.key_id != "admin_key" else None,
        )
        if not created:
            response.status_code = 200
        return run

    @r.get("/runs", response_model=RunPage, summary="List runs, newest first")
    async def list_runs(
        caller: CallerDep,
        status: RunStatus | None = None,
        kind: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(pattern=r"^\d+:[A-Za-z0-9_]+$")] = None,
        thread_id: Annotated[str | None, Query(pattern=THREAD_ID_PATTERN)] = None,
    ) -> RunPage:
        """``thread_id`` lists one thread's runs."""
        return await services.service.list_runs(
            tenant=caller.tenant, status=status, kind=kind, limit=limit, cursor=cursor, thread_id=thread_id
        )

    @r.get("/runs/{run_id}", response_model=Run, summary="Get a run")
    async def get_run(run_id: str, caller: CallerDep) -> Run:
        return await services.service.get(run_id, tenant=caller.tenant)

    @r.get("/runs/{run_id}/cost", response_model=Cost, summary="A run's cost breakdown")
    async def get_cost(run_id: str, caller: CallerDep) -> Cost:
        return await services.service.cost(run_id, tenant=caller.tenant)

    @r.post("/runs/{run_id}/cancel", response_model=CancelResponse, status_code=202, summary="Cancel a run")
    async def cancel(run_id: str, caller: CallerDep) -> CancelResponse:
        """A queued run is cancelled at once; a running one is told within a second and ends with
        its partial result. Cancelling a finished run changes nothing."""
        return await services.service.cancel(run_id, tenant=caller.tenant)

    @r.get(
        "/runs/{run_id}/events",
        summary="Stream a run's events (Server-Sent Events)",
        response_class=EventSourceResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def events(
        run_id: str,
        caller: CallerDep,
        last_event_id: Annotated[str | None, Header()] = None,
        after: Annotated[int | None, Query(ge=0, description="Resume after this event id.")] = None,
        follow: bool = True,
    ) -> EventSourceResponse:
        """Each event is ``id: <n>``, ``event: <type>``, ``data: <Event JSON>``. Reconnect with
        ``Last-Event-ID`` (or ``?after=``) to resume exactly after that event. The stream ends after
        ``run.finished`` (or at once with ``follow=false``)."""
        start = after
        if start is None and last_event_id:
            try:
                start = int(last_event_id.split("-", 1)[0])
            except ValueError:
                raise ApiError(
                    422, "invalid_request", f"Last-Event-ID: expected an event id, got {last_event_id!r}"
                ) from None
        stream = await services.service.events(run_id, tenant=caller.tenant, after=start or 0, follow=follow)
        return EventSourceResponse(
            _sse(stream), ping=15, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    @r.get("/runs/{run_id}/workspace", response_model=WorkspaceListing, summary="List a run's workspace")
    async def workspace_list(run_id: str, caller: CallerDep) -> WorkspaceListing:
        """Every file of the run's committed workspace, with sizes and line counts."""
        return await services.service.workspace(run_id, tenant=caller.tenant)

    @r.get(
        "/runs/{run_id}/workspace.tar.gz",
        summary="Download a run's workspace",
        response_class=Response,
        responses={200: {"content": {"application/gzip": {}}}},
    )
    async def workspace_tar(run_id: str, caller: CallerDep) -> Response:
        data = await services.service.workspace_tarball(run_id, tenant=caller.tenant)
        return Response(
            data,
            media_type="application/gzip",
            headers={"Content-Disposition": f'attachment; filename="{run_id}-workspace.tar.gz"'},
        )

    @r.get(
        "/runs/{run_id}/workspace/{path:path}",
        summary="Read one workspace file",
        response_class=Response,
        responses={200: {"content": {"application/octet-stream": {}}}},
    )
    async def workspace_file(run_id: str, path: str, caller: CallerDep) -> Response:
        data, media = await services.service.workspace_file(run_id, path, tenant=caller.tenant)
        return Response(data, media_type=media)

    return r


def admin_router(services: Services) -> APIRouter:
    r = APIRouter(prefix="/v1/admin", tags=["admin"], responses=ERRORS)

    @r.post("/keys", response_model=NewKey, status_code=201, summary="Create an API key")
    async def create_key(body: NewKeyRequest, _: AdminDep) -> NewKey:
        """The secret is in the answer once; only its hash is stored."""
        return await services.service.create_key(body.tenant, name=body.name, admin=body.admin)

    @r.get("/keys", response_model=list[ApiKey], summary="List API keys")
    async def list_keys(
        _: AdminDep, tenant: Annotated[str | None, Query(min_length=1, max_length=64)] = None
    ) -> list[ApiKey]:
        return await services.service.list_keys(tenant)

    @r.post("/keys/{key_id}/revoke", response_model=ApiKey, summary="Revoke an API key")
    async def revoke_key(key_id: str, _: AdminDep) -> ApiKey:
        return await services.service.revoke_key(key_id)

    return r


async def _sse(stream: AsyncIterator[Event]) -> AsyncIterator[ServerSentEvent]:
    async for e in stream:
        yield ServerSentEvent(data=e.model_dump_json(), event=e.type, id=str(e.id))


def create_app(
    settings: Settings,
    redis_url: str | None = None,
    *,
    store: RunStore | None = None,
    extra_routers: list[APIRouter] | None = None,
) -> FastAPI:
    services = Services(settings, redis_url, store=store)
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
    install_authenticator(app, Authenticator(lambda: services.service))
    install_error_handlers(app)

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        details = None
        if isinstance(exc, InvalidInput):
            details = [{"field": exc.field, "message": exc.message, "value": exc.value}]
        status = next((s for cls, s in _STATUS.items() if isinstance(exc, cls)), 400)
        return JSONResponse(
            status_code=status, content={"error": {"code": exc.code, "message": exc.message, "details": details}}
        )

    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)  # every body, declared or chunked

    app.include_router(runs_router(services))
    app.include_router(admin_router(services))
    for reporting in (webhooks_router, schedules_router, metrics_router):  # issue 18: runs that report back
        app.include_router(reporting(services))
    app.include_router(tenants_router(services, ERRORS))
    app.include_router(steer_router(services, ERRORS))
    for router in extra_routers or []:
        app.include_router(router)
    mount_console(app)  # the web console at /ui (static files; every datum comes from the routes above)

    @app.get("/healthz", tags=["service"], summary="Liveness and queue depth")
    async def healthz() -> dict[str, Any]:
        depth = await services.service.queue_depth()
        return {"status": "ok", "queue": {"waiting": depth.waiting, "in_flight": depth.in_flight}}

    return app
