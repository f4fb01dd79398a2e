"""``SteerService``: what the API does for runs that people steer — pause and resume, approvals, forks and
threads — over the ``SteerStore`` operations, with the rules stated once here.

- Tenant isolation as for runs: another tenant's run, approval or thread is *not found*.
- A decision is checked before it is recorded: an ``edit`` against the tool's JSON schema (a 422 naming
  ``arguments.<field>``), an answer for a question. Recording it is the store's atomic ``decide``: a
  second decision, or one for a run that waits for nothing, is a 409 that says why.
- Timeouts are applied when approvals are read (as well as by the workers), so a list never shows a call
  as pending after its time has passed.
- A message on a thread takes the fields it leaves out from the thread's latest run, and is validated as
  a task before the store applies the thread's multitask policy.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

from conclave.config import Settings
from conclave.core.kinds import validate_spec
from conclave.core.store import RunStore, spec_hash
from conclave.core.store_steer import (
    DecideOutcome,
    ForkOutcome,
    MessageOutcome,
    PauseOutcome,
    ResumeOutcome,
)
from conclave.schema import (
    Approval,
    ApprovalDecision,
    ApprovalDecisionResponse,
    ApprovalList,
    ApprovalStatus,
    ForkRequest,
    MultitaskPolicy,
    Run,
    RunControlResponse,
    RunPage,
    RunStatus,
    StepListing,
    TaskSpec,
    Thread,
    ThreadCreate,
    ThreadMessage,
    ThreadMessageResponse,
    ThreadPage,
    ThreadRuns,
)

from .errors import Conflict, InvalidInput, NotFound

__all__ = ["SteerService", "submit_to_thread"]


def _thread_id() -> str:
    return f"thr_{secrets.token_hex(8)}"


async def submit_to_thread(
    store: RunStore,
    spec: TaskSpec,
    *,
    tenant: str,
    multitask: MultitaskPolicy | None = None,
    trace: Mapping[str, str] | None = None,
    key_id: str | None = None,
) -> tuple[Run, str]:
    """Post a validated spec with a ``thread_id`` as the thread's next message. Returns the run and what
    happened (``started``, ``enqueued``, ``interrupting``, ``rolling_back``, ``existing``); a rejection is a
    ``Conflict`` naming the active run."""
    h = spec_hash(spec)
    res = await store.post_message(spec, tenant=tenant, multitask=multitask, spec_hash=h, trace=trace, key_id=key_id)
    if res.outcome is MessageOutcome.REJECTED:
        raise Conflict(
            "thread_busy",
            f"thread {spec.thread_id!r} is busy with run {res.active} and its multitask policy is 'reject'; "
            "wait for that run to end, or send with multitask 'enqueue', 'interrupt' or 'rollback'",
        )
    if res.outcome is MessageOutcome.EXISTING:
        if res.spec_hash != h:
            raise Conflict(
                "idempotency_conflict",
                f"idempotency key {spec.idempotency_key!r} was used for a different task "
                f"(run {res.run.id if res.run else '?'})",
            )
    else:
        await store.durable()
    if res.run is None:  # pragma: no cover - every other outcome names a run
        raise RuntimeError(f"posting to thread {spec.thread_id} returned no run ({res.outcome})")
    return res.run, res.outcome.value


class SteerService:
    def __init__(self, store: RunStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    async def _run(self, run_id: str, tenant: str) -> Run:
        run = await self.store.get(run_id, tenant=tenant)
        if run is None:
            raise NotFound("run_not_found", f"no run {run_id!r}")
        return run

    # -- pause and resume -------------------------------------------------------------------------
    async def pause(self, run_id: str, *, tenant: str) -> RunControlResponse:
        """A running run stops at its next step boundary (``pausing``); a queued one is ``paused`` now."""
        res = await self.store.request_pause(run_id, tenant=tenant, reason="user")
        if res.outcome is PauseOutcome.MISSING:
            raise NotFound("run_not_found", f"no run {run_id!r}")
        if res.outcome is PauseOutcome.WAITING:
            raise Conflict(
                "run_waiting",
                f"run {run_id} waits for a decision on its calls and holds nothing; decide them "
                "(POST /v1/runs/{id}/approvals) or cancel it",
            )
        if res.outcome is PauseOutcome.TERMINAL:
            raise Conflict("run_ended", f"run {run_id} has ended ({res.label}); there is nothing to pause")
        return RunControlResponse(run=await self._run(run_id, tenant), result=res.outcome.value)

    async def resume(self, run_id: str, *, tenant: str) -> RunControlResponse:
        """A paused run goes back on the queue (``resumed``), or behind its thread's active run
        (``enqueued``)."""
        res = await self.store.resume(run_id, tenant=tenant)
        if res.outcome is ResumeOutcome.MISSING:
            raise NotFound("run_not_found", f"no run {run_id!r}")
        if res.outcome is ResumeOutcome.NOT_PAUSED:
            state = res.status.value if res.status else "not paused"
            raise Conflict("run_not_paused", f"run {run_id} is {state}, not paused; only a paused run resumes")
        if res.outcome is ResumeOutcome.SUPERSEDED:
            raise Conflict(
                "run_superseded",
                f"run {run_id} was interrupted by a newer message on its thread, and a later run continued from "
                "it; send a new message to the thread instead",
            )
        return RunControlResponse(run=await self._run(run_id, tenant), result=res.outcome.value)

    # -- approvals --------------------------------------------------------------------------------
    async def list_approvals(self, *, tenant: str, status: ApprovalStatus | None = None) -> ApprovalList:
        await self.store.expire_approvals()
        return ApprovalList(approvals=await self.store.list_approvals(tenant, status=status))

    async def run_approvals(self, run_id: str, *, tenant: str) -> ApprovalList:
        await self._run(run_id, tenant)
        await self.store.expire_approvals()
        return ApprovalList(approvals=await self.store.approvals(run_id))

    async def decide(self, run_id: str, body: ApprovalDecision, *, tenant: str) -> ApprovalDecisionResponse:
        run = await self._run(run_id, tenant)
        await self.store.expire_approvals()
        approval = next((a for a in await self.store.approvals(run_id) if a.id == body.approval_id), None)
        if approval is None:
            if run.status is not RunStatus.WAITING:
                raise Conflict("run_not_waiting", f"run {run_id} is {run.status.value}: it waits for no decision")
            raise NotFound("approval_not_found", f"run {run_id} has no approval {body.approval_id!r}")
        if approval.status is ApprovalStatus.PENDING:
            self._check(approval, body)
        res = await self.store.decide(
            run_id,
            body.approval_id,
            tenant=tenant,
            decision=body.decision,
            reason=body.reason,
            arguments=body.arguments,
            answer=body.answer,
        )
        if res.outcome is DecideOutcome.MISSING:
            raise NotFound("approval_not_found", f"run {run_id} has no approval {body.approval_id!r}")
        if res.outcome is DecideOutcome.ALREADY_DECIDED:
            got = res.approval.status.value if res.approval else "decided"
            raise Conflict(
                "approval_decided", f"approval {body.approval_id} of run {run_id} was already decided ({got})"
            )
        if res.outcome is DecideOutcome.NOT_WAITING:
            state = res.status.value if res.status else "not waiting"
            raise Conflict("run_not_waiting", f"run {run_id} is {state}: it waits for no decision")
        if res.approval is None:  # pragma: no cover - a decided approval exists
            raise RuntimeError(f"approval {body.approval_id} vanished")
        return ApprovalDecisionResponse(approval=res.approval, run=await self._run(run_id, tenant))

    @staticmethod
    def _check(approval: Approval, body: ApprovalDecision) -> None:
        """A decision that makes sense for this call: a question is answered, an edit fits the schema."""
        if approval.kind == "question":
            if body.decision == "edit":
                raise InvalidInput(
                    "invalid_decision",
                    "decision: a question (ask_human) is answered with 'approve' and an answer, or 'deny'",
                    field="decision",
                    value=body.decision,
                )
            if body.decision == "approve" and not (body.answer or body.reason):
                raise InvalidInput(
                    "answer_required",
                    f"answer: the question {approval.arguments.get('question', '')!r} needs an answer",
                    field="answer",
                )
            return
        if body.decision != "edit":
            return
        args: Any = body.arguments
        error = best_match(jsonschema.Draft202012Validator(approval.parameters or {"type": "object"}).iter_errors(args))
        if error is not None:
            where = ".".join(str(p) for p in error.absolute_path)
            name = f"arguments.{where}" if where else "arguments"
            if error.validator == "required" and isinstance(error.instance, dict):
                missing = [r for r in error.validator_value if r not in error.instance]
                if missing:
                    name = f"arguments.{missing[0]}"
            shown = error.instance if where else None
            raise InvalidInput(
                "invalid_arguments",
                f"{name}: {error.message} (the arguments of {approval.tool} must fit its schema)",
                field=name,
                value=shown,
            )

    # -- steps and forks --------------------------------------------------------------------------
    async def steps(self, run_id: str, *, tenant: str) -> StepListing:
        run = await self._run(run_id, tenant)
        return StepListing(run_id=run_id, status=run.status, steps=await self.store.step_log(run_id))

    async def fork(
        self,
        run_id: str,
        body: ForkRequest,
        *,
        tenant: str,
        trace: Mapping[str, str] | None = None,
        key_id: str | None = None,
    ) -> Run:
        """A new run that takes over ``body.step_key`` and the steps before it, with the changes asked."""
        src = await self._run(run_id, tenant)
        changes: dict[str, Any] = {"thread_id": None, "idempotency_key": None}
        if body.input is not None:
            changes["input"] = body.input
        if body.options is not None:
            changes["options"] = body.options
        if body.budget is not None:
            changes["budget"] = body.budget
        spec = TaskSpec.model_validate({**src.spec.model_dump(exclude_none=True), **changes})
        validate_spec(spec, self.settings.model_names())
        res = await self.store.fork(
            run_id, tenant=tenant, step_key=body.step_key, spec=spec, trace=trace, key_id=key_id
        )
        if res.outcome is ForkOutcome.MISSING:
            raise NotFound("run_not_found", f"no run {run_id!r}")
        if res.outcome is ForkOutcome.NO_STEP:
            keys = [s.key for s in await self.store.step_log(run_id)]
            shown = ", ".join(keys[:20]) + (" …" if len(keys) > 20 else "")
            raise InvalidInput(
                "unknown_step",
                f"step_key: run {run_id} has no committed step {body.step_key!r}; its steps: {shown or 'none'}",
                field="step_key",
                value=body.step_key,
            )
        if res.run is None:  # pragma: no cover
            raise RuntimeError("fork returned no run")
        await self.store.durable()
        return res.run

    # -- threads ----------------------------------------------------------------------------------
    async def create_thread(self, body: ThreadCreate, *, tenant: str) -> Thread:
        tid = body.id or _thread_id()
        res = await self.store.create_thread(tenant, thread_id=tid, multitask=body.multitask, metadata=body.metadata)
        if not res.created:
            raise Conflict("thread_exists", f"thread {tid!r} exists already")
        return res.thread

    async def get_thread(self, thread_id: str, *, tenant: str) -> Thread:
        thread = await self.store.get_thread(thread_id, tenant=tenant)
        if thread is None:
            raise NotFound("thread_not_found", f"no thread {thread_id!r}")
        return thread

    async def list_threads(self, *, tenant: str, limit: int = 50, cursor: str | None = None) -> ThreadPage:
        return await self.store.list_threads(tenant, limit=limit, cursor=cursor)

    async def thread_runs(self, thread_id: str, *, tenant: str) -> ThreadRuns:
        thread = await self.get_thread(thread_id, tenant=tenant)
        rids = await self.store.thread_runs(thread_id, tenant=tenant)
        return ThreadRuns(thread=thread, runs=await self.store.get_many(rids))

    async def list_runs(
        self,
        thread_id: str,
        *,
        tenant: str,
        status: RunStatus | None = None,
        kind: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        """``GET /v1/runs?thread_id=``: the thread's runs newest first, filtered and paged like all runs."""
        rids = await self.store.thread_runs(thread_id, tenant=tenant)
        runs = [
            r
            for r in await self.store.get_many(rids)
            if (status is None or r.status is status) and (kind is None or r.spec.kind == kind)
        ]
        runs.sort(key=lambda r: (int(r.created_at.timestamp() * 1000), r.id), reverse=True)
        if cursor:
            ms, _, after = cursor.partition(":")
            runs = [r for r in runs if (int(r.created_at.timestamp() * 1000), r.id) < (int(ms), after)]
        page, more = runs[:limit], len(runs) > limit
        nxt = f"{int(page[-1].created_at.timestamp() * 1000)}:{page[-1].id}" if more and page else None
        return RunPage(runs=page, next_cursor=nxt)

    async def send(
        self,
        thread_id: str,
        body: ThreadMessage,
        *,
        tenant: str,
        trace: Mapping[str, str] | None = None,
        key_id: str | None = None,
    ) -> ThreadMessageResponse:
        """The thread's next message: a run that sees the thread's conversation and workspace."""
        thread = await self.get_thread(thread_id, tenant=tenant)
        base: dict[str, Any] = {}
        if thread.last_run:
            last = await self.store.get(thread.last_run, tenant=tenant)
            if last is not None:
                base = last.spec.model_dump(exclude_none=True, exclude={"input", "idempotency_key", "thread_id"})
        given = body.model_dump(exclude_unset=True, exclude={"multitask"})
        spec = TaskSpec.model_validate({**base, **given, "thread_id": thread_id})
        validate_spec(spec, self.settings.model_names())
        run, result = await submit_to_thread(
            self.store, spec, tenant=tenant, multitask=body.multitask, trace=trace, key_id=key_id
        )
        return ThreadMessageResponse(run=run, thread=await self.get_thread(thread_id, tenant=tenant), result=result)
