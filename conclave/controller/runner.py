"""Executing one run on the worker that claimed it: from claim to a committed terminal state.

The runner turns every way a run body can end into a terminal state — an answer, a budget limit,
a cancel, an error — and commits it with ``finish``, which also acknowledges the queue entry. Two
endings are deliberately *not* terminal: a lost lease (another worker owns the run now) and a lost
Redis connection. The run is then abandoned without a word; its queue entry stays pending, the
lease runs out, and a worker reclaims it and resumes from the last committed step.

Two more endings of an attempt hand the run over instead of finishing it (``conclave.core.steering``):
the body stopped at a step boundary to **pause** (a pause was asked, a thread's new message interrupted
it, or the tenant's or API key's budget is spent — a ``BudgetExhausted`` in a ``tenant/`` or ``key/``
scope never fails a run) or to **wait** for people's decisions on its calls. The store records the
state, releases every hold and acknowledges the queue entry; the run continues on any worker later.
A run on a thread first takes in the thread's conversation and workspace (``thread_context``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from conclave.agents.runtime import RunEnv, open_run
from conclave.budgets.cost import cost_from_snapshot
from conclave.core import telemetry
from conclave.core.context import RunContext
from conclave.core.kinds import Outcome, SpecError, get_kind
from conclave.core.ledger import BudgetExhausted
from conclave.core.steering import PauseAtBoundary, StepBoundary, is_outer_scope
from conclave.core.store import ClaimOutcome, FinishFields, LeaseLost, RunStore
from conclave.core.store_steer import PauseReason
from conclave.schema import RunStatus, StopReason

from .outage import DOWN
from .thread_context import enter_thread

__all__ = ["ActiveRun", "Runner"]

log = logging.getLogger(__name__)

_PAUSE_REASONS: dict[str, PauseReason] = {"user": "user", "interrupt": "interrupt", "tenant_budget": "tenant_budget"}

# A full store (maxmemory, noeviction) refuses every write atomically: like an outage, the attempt is left
# for a later reclaim, nothing half-written and nothing failed.
_REDIS_DOWN = DOWN


@dataclass
class ActiveRun:
    rid: str
    owner: str
    qid: str
    task: asyncio.Task[Any] | None = None
    ctx: RunContext | None = None
    cancel_reason: str | None = None
    lease_lost: bool = False
    body: asyncio.Task[Any] | None = field(default=None, repr=False)


class _WallClock(Exception):
    """The run's wall_seconds budget ran out."""


class Runner:
    """Runs claimed queue entries. Shared by every run a worker executes."""

    def __init__(self, store: RunStore, env: RunEnv, *, worker: str, max_attempts: int) -> None:
        self.store = store
        self.env = env
        self.worker = worker
        self.max_attempts = max_attempts

    async def execute(self, active: ActiveRun) -> str:
        """Claim and run one entry; returns what happened (for logs and tests)."""
        rid, owner = active.rid, active.owner
        claim = await self.store.claim(
            rid, owner=owner, qid=active.qid, worker=self.worker, max_attempts=self.max_attempts
        )
        if claim.outcome is not ClaimOutcome.OK:
            log.info("run %s not executed: %s %s", rid, claim.outcome.value, claim.status or "")
            return claim.outcome.value
        try:
            run = await self.store.get(rid)
        except ValidationError as e:
            reason = f"the stored run record no longer parses: {e.errors()[0]['msg']}"
            log.error("run %s: %s; dead-lettered", rid, reason)
            await self.store.poison(rid, owner=owner, qid=active.qid, reason=reason)
            return "poison"
        if run is None:  # pragma: no cover - the claim just saw it
            return "missing"
        ctx = await open_run(self.store, run, owner=owner, attempt=claim.attempt, env=self.env, claim=claim)
        active.ctx = ctx
        parent = await self.store.trace_context(rid)
        try:
            with telemetry.run_span(rid, run.spec.kind, parent, claim.attempt, tenant=run.tenant) as span:
                outcome = await self._body(active, ctx)
                if isinstance(outcome, StepBoundary):
                    span.set_attribute("conclave.run.status", "waiting" if ctx.approval_requests else "paused")
                    return await self._hand_over(active, ctx, outcome)
                span.set_attribute("conclave.run.status", outcome.status.value)
        except LeaseLost:
            log.warning("run %s: lease lost to another worker; abandoning this attempt", rid)
            return "lease_lost"
        except _REDIS_DOWN as e:
            log.warning("run %s: Redis unreachable (%s); abandoning this attempt for a later reclaim", rid, e)
            return "abandoned"
        if active.lease_lost:
            return "lease_lost"
        return await self._finish(ctx, outcome, run.tenant)

    async def _body(self, active: ActiveRun, ctx: RunContext) -> Outcome | StepBoundary:
        spec = ctx.spec
        try:
            kind = get_kind(spec.kind)
        except SpecError as e:
            return Outcome(status=RunStatus.FAILED, stop_reason=StopReason.ERROR, detail=str(e))
        wall = spec.budget.wall_seconds if spec.budget else None
        remaining = None if wall is None else wall - ctx.elapsed()
        if remaining is not None and remaining <= 0:
            return self._budget_outcome(ctx, "wall_seconds")
        body = asyncio.ensure_future(self._run_kind(kind.run, ctx))
        active.body = body
        waiter = asyncio.ensure_future(ctx.cancel_requested.wait())
        try:
            done, _ = await asyncio.wait({body, waiter}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            if body not in done:
                body.cancel()
                await asyncio.gather(body, return_exceptions=True)
                if active.lease_lost:
                    raise LeaseLost(ctx.run_id)
                if waiter in done:
                    await ctx.emit("run.cancel_requested", {"reason": active.cancel_reason or "user"})
                    return Outcome(
                        output=ctx.partial_output,
                        status=RunStatus.CANCELLED,
                        stop_reason=StopReason.CANCELLED,
                        detail="cancelled on request",
                    )
                return self._budget_outcome(ctx, "wall_seconds")
            return body.result()
        except StepBoundary as stop:
            return stop
        except BudgetExhausted as e:
            if is_outer_scope(e.scope):
                return PauseAtBoundary("tenant_budget", f"{e}; the run continues when the budget allows")
            return self._budget_outcome(ctx, e.label, scope=e.scope)
        except (LeaseLost, *_REDIS_DOWN):
            raise
        except asyncio.CancelledError:
            if active.lease_lost:
                raise LeaseLost(ctx.run_id) from None
            raise
        except Exception as e:  # the body's own failure: recorded, never retried
            log.exception("run %s failed", ctx.run_id)
            return Outcome(
                output=ctx.partial_output,
                status=RunStatus.FAILED,
                stop_reason=StopReason.ERROR,
                detail=f"{type(e).__name__}: {e}",
            )
        finally:
            waiter.cancel()

    @staticmethod
    async def _run_kind(body: Any, ctx: RunContext) -> Outcome:
        await enter_thread(ctx)
        outcome: Outcome = await body(ctx)
        return outcome

    async def _hand_over(self, active: ActiveRun, ctx: RunContext, stop: StepBoundary) -> str:
        """The body stopped at a step boundary: the run waits for people or pauses, holding nothing."""
        await ctx.flush()
        if active.lease_lost:
            return "lease_lost"
        if ctx.approval_requests:
            ok = await self.store.wait_for_approval(
                ctx.run_id, ctx.owner, ctx.approval_requests, output=ctx.partial_output
            )
            outcome = "waiting"
        else:
            detail = stop.detail if isinstance(stop, PauseAtBoundary) else None
            reason = stop.reason if isinstance(stop, PauseAtBoundary) else None
            if reason is None:  # a pause was asked: of which kind, the run record says
                run = await self.store.get(ctx.run_id)
                reason = _PAUSE_REASONS.get((run.pause_requested if run else None) or "", "user")
            ok = await self.store.pause(ctx.run_id, ctx.owner, reason=reason, detail=detail, output=ctx.partial_output)
            outcome = "paused"
        if not ok:
            log.warning("run %s: lost to another owner before it could be handed over", ctx.run_id)
            return "lease_lost"
        log.info("run %s: %s at a step boundary", ctx.run_id, outcome)
        return outcome

    @staticmethod
    def _budget_outcome(ctx: RunContext, limit: str, scope: str = "run") -> Outcome:
        where = "" if scope == "run" else f" (in scope {scope})"
        return Outcome(
            output=ctx.partial_output,
            status=RunStatus.BUDGET_EXHAUSTED,
            stop_reason=StopReason.BUDGET_EXHAUSTED,
            detail=f"budget limit {limit} exhausted{where}",
            result={"exhausted_limit": limit, "scope": scope},
        )

    async def _finish(self, ctx: RunContext, outcome: Outcome, tenant: str) -> str:
        await ctx.flush()
        wall = ctx.elapsed()
        cost = cost_from_snapshot(await ctx.ledger.snapshot(), wall_cap_s=ctx.ledger.wall_cap_s, wall_seconds=wall)
        exhausted = None
        if outcome.status == RunStatus.BUDGET_EXHAUSTED:
            exhausted = (outcome.result or {}).get("exhausted_limit") or cost.exhausted_limit
            cost = cost.model_copy(update={"exhausted_limit": exhausted})
        fields = FinishFields(
            stop_reason=outcome.stop_reason,
            output=outcome.output,
            result=outcome.result,
            stop_detail=outcome.detail,
            error=outcome.detail if outcome.status == RunStatus.FAILED else None,
            cost=cost,
            usage=cost.total.usage,
            exhausted_limit=exhausted,
        )
        ok = await self.store.finish(ctx.run_id, ctx.owner, outcome.status, fields)
        telemetry.run_finished(outcome.status.value, ctx.spec.kind, tenant)
        if not ok:
            log.warning("run %s: finished by another owner meanwhile; result dropped", ctx.run_id)
            return "lease_lost"
        return outcome.status.value
