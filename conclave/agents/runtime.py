"""Opening a run for execution: one place that builds a ``RunContext`` from what the store holds.

The worker's runner, the tests and the benchmarks all open runs here, so a context is always assembled
the same way: the run record, its committed steps and workspace, its ledger with the budget's caps, and a
``Meter`` over the deployment's router and prices.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from conclave.budgets.caps import install_budget
from conclave.budgets.pricing import Pricing
from conclave.core.context import RunContext
from conclave.core.router import ModelRouter
from conclave.core.store import ClaimResult, RunStore
from conclave.schema import Run

from .meter import Meter

__all__ = ["RunEnv", "open_run"]


@dataclass(frozen=True)
class RunEnv:
    """What a deployment gives every run it executes."""

    router: ModelRouter
    pricing: Pricing
    default_model: str | None = None


async def open_run(
    store: RunStore, run: Run, *, owner: str, attempt: int, env: RunEnv, claim: ClaimResult | None = None
) -> RunContext:
    """The context of ``run`` for the worker whose lease token is ``owner`` (the run was claimed with it).
    Installs the budget's caps (a resumed run keeps the caps it started with). ``claim`` gives the store's
    clock at the claim, from which the run's wall time is counted."""
    started = run.started_at.timestamp() if run.started_at else time.time()
    elapsed = 0.0
    if claim is not None and claim.clock is not None and claim.started_at is not None:
        # time spent waiting for people or paused is not running time
        started, elapsed = claim.started_at, max(0.0, claim.clock - claim.started_at - run.idle_seconds)
    ctx = RunContext(
        store=store,
        run_id=run.id,
        spec=run.spec,
        owner=owner,
        attempt=attempt,
        steps=await store.load_steps(run.id),
        files=await store.load_workspace(run.id),
        router=env.router,
        default_model=env.default_model,
        started_at=started,
        last_event_id=run.last_event_id,
        elapsed_at_open=elapsed,
    )
    ctx.attach_meter(Meter(ledger=ctx.ledger, pricing=env.pricing, router=env.router, sink=ctx))
    if run.cancel_requested:
        ctx.cancel_requested.set()
    ctx.pause_requested = bool(run.pause_requested)
    await install_budget(ctx.ledger, run.spec.budget)
    return ctx
