"""HTTP wiring of runs that people steer: pause / resume, approvals, steps and forks, threads. Every route
is one ``SteerService`` call (``conclave.controller.steer``); another tenant's things are 404."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from conclave.controller.steer import SteerService
from conclave.core import telemetry
from conclave.schema import (
    ApprovalDecision,
    ApprovalDecisionResponse,
    ApprovalList,
    ApprovalStatus,
    ForkRequest,
    Run,
    RunControlResponse,
    StepListing,
    Thread,
    ThreadCreate,
    ThreadMessage,
    ThreadMessageResponse,
    ThreadPage,
    ThreadRuns,
)

from .auth import Caller, CallerDep

__all__ = ["steer_router"]


def _key(caller: Caller) -> str | None:
    return caller.key_id if caller.key_id != "admin_key" else None


def steer_router(services: Any, errors: dict[int | str, dict[str, Any]]) -> APIRouter:
    r = APIRouter(prefix="/v1", responses=errors)

    def steer() -> SteerService:
        return SteerService(services.service.store, services.settings)

    # -- pause and resume -------------------------------------------------------------------------
    @r.post(
        "/runs/{run_id}/pause", response_model=RunControlResponse, status_code=202, tags=["runs"], summary="Pause a run"
    )
    async def pause(run_id: str, caller: CallerDep) -> RunControlResponse:
        """A running run stops at its next step boundary (``pausing``), keeping what it committed and
        holding no worker, lease or budget; a queued run is ``paused`` at once. 409 for a run that waits
        for approval or has ended."""
        return await steer().pause(run_id, tenant=caller.tenant)

    @r.post(
        "/runs/{run_id}/resume",
        response_model=RunControlResponse,
        status_code=202,
        tags=["runs"],
        summary="Resume a paused run",
    )
    async def resume(run_id: str, caller: CallerDep) -> RunControlResponse:
        """Back on the queue (``resumed``; ``enqueued`` behind its thread's active run); any worker continues
        it from its checkpoint. 409 when it is not paused."""
        return await steer().resume(run_id, tenant=caller.tenant)

    # -- approvals --------------------------------------------------------------------------------
    @r.get("/approvals", response_model=ApprovalList, tags=["approvals"], summary="The tenant's approvals")
    async def list_approvals(caller: CallerDep, status: ApprovalStatus | None = None) -> ApprovalList:
        """Newest first; ``?status=pending`` for the calls waiting for someone now."""
        return await steer().list_approvals(tenant=caller.tenant, status=status)

    @r.get("/runs/{run_id}/approvals", response_model=ApprovalList, tags=["approvals"], summary="A run's approvals")
    async def run_approvals(run_id: str, caller: CallerDep) -> ApprovalList:
        return await steer().run_approvals(run_id, tenant=caller.tenant)

    @r.post(
        "/runs/{run_id}/approvals",
        response_model=ApprovalDecisionResponse,
        tags=["approvals"],
        summary="Decide a call that waits for approval",
    )
    async def decide(run_id: str, body: ApprovalDecision, caller: CallerDep) -> ApprovalDecisionResponse:
        """``approve`` (for ``ask_human``: with the ``answer``), ``deny`` (the ``reason`` is what the model
        reads) or ``edit`` (new ``arguments``, checked against the tool's schema: 422 naming the field). The
        first decision wins: a second one, or one for a run that is not waiting, is a 409. When it was the
        run's last pending call the run goes back on the queue."""
        return await steer().decide(run_id, body, tenant=caller.tenant)

    # -- steps and forks --------------------------------------------------------------------------
    @r.get("/runs/{run_id}/steps", response_model=StepListing, tags=["runs"], summary="A run's committed steps")
    async def steps(run_id: str, caller: CallerDep) -> StepListing:
        """Step keys in commit order, each with the run's last event id after it committed: the points a
        fork can continue from."""
        return await steer().steps(run_id, tenant=caller.tenant)

    @r.post("/runs/{run_id}/fork", response_model=Run, status_code=201, tags=["runs"], summary="Fork a run")
    async def fork(run_id: str, body: ForkRequest, caller: CallerDep) -> Run:
        """A new run whose checkpoint holds the committed steps up to and including ``step_key`` (replayed,
        never executed again) and whose workspace is the original's as it was after that step; it
        continues from there with the changes given. The original is not touched."""
        return await steer().fork(run_id, body, tenant=caller.tenant, trace=telemetry.carrier(), key_id=_key(caller))

    # -- threads ----------------------------------------------------------------------------------
    @r.post("/threads", response_model=Thread, status_code=201, tags=["threads"], summary="Create a thread")
    async def create_thread(body: ThreadCreate, caller: CallerDep) -> Thread:
        return await steer().create_thread(body, tenant=caller.tenant)

    @r.get("/threads", response_model=ThreadPage, tags=["threads"], summary="List threads, newest first")
    async def list_threads(
        caller: CallerDep,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(pattern=r"^\d+:[A-Za-z0-9_.:\-]+$")] = None,
    ) -> ThreadPage:
        return await steer().list_threads(tenant=caller.tenant, limit=limit, cursor=cursor)

    @r.get("/threads/{thread_id}", response_model=Thread, tags=["threads"], summary="Get a thread")
    async def get_thread(thread_id: str, caller: CallerDep) -> Thread:
        return await steer().get_thread(thread_id, tenant=caller.tenant)

    @r.get("/threads/{thread_id}/runs", response_model=ThreadRuns, tags=["threads"], summary="A thread's runs")
    async def thread_runs(thread_id: str, caller: CallerDep) -> ThreadRuns:
        """Oldest first."""
        return await steer().thread_runs(thread_id, tenant=caller.tenant)

    @r.post(
        "/threads/{thread_id}/runs",
        response_model=ThreadMessageResponse,
        status_code=201,
        tags=["threads"],
        summary="Send a message on a thread",
    )
    async def send(thread_id: str, body: ThreadMessage, caller: CallerDep, response: Response) -> ThreadMessageResponse:
        """The thread's next run: it sees the thread's conversation and starts with a copy of its latest
        workspace; fields left out come from the thread's latest run. While a run of the thread is
        active the ``multitask`` policy decides: ``reject`` (409), ``enqueue``, ``interrupt`` or
        ``rollback``."""
        out = await steer().send(thread_id, body, tenant=caller.tenant, trace=telemetry.carrier(), key_id=_key(caller))
        if out.result == "existing":
            response.status_code = 200
        return out

    return r
