"""What a run body sees: its spec, durable steps, events, its workspace, its ledger and metered models.

``step(key, fn)`` is the unit of durability. A step whose key was committed before is not run again: its
recorded value is returned. A step that runs commits its value, the events it emitted, its workspace
changes and its ledger ops in one ``RunStore.commit``, so a worker killed at any instant leaves either
all of a step or none of it. Step keys must be deterministic for a given run history.

Steering. A step may not start once a pause was asked (a commit answered ``pause_requested``): ``step``
raises ``PauseAtBoundary`` instead, and the runner hands the run over. A call that needs a person asks
``decision`` for the recorded one; without it, ``wait_for`` notes the request and raises
``WaitForPeople``; the runner makes the run wait, and the resumed run finds the decision recorded.

A kind needs only this object. Model and tool calls go through ``ctx.meter`` (a ``Metered``: the agents'
``Meter``, attached by whoever builds the context — ``conclave.agents.runtime.open_run``), which reserves
each call's worst case in the ledger first; there is no way around the ledger.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from conclave.schema import Approval, ApprovalStatus, EventType, TaskSpec
from conclave.schema.chat import ChatRequest, ChatResponse

from . import telemetry
from .ids import unique_id
from .ledger import RunLedger
from .pending import LedgerOp, PendingCommit
from .router import ModelRouter
from .steering import PauseAtBoundary, WaitForPeople
from .store import RunStore
from .store_steer import ApprovalRequest
from .wire import value_json
from .workspace import Workspace, WorkspaceOp

__all__ = ["Emitter", "Metered", "RunContext", "StepValueError"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_pending: contextvars.ContextVar[PendingCommit | None] = contextvars.ContextVar("conclave_pending", default=None)


#: Where code that runs inside a run sends its events (``RunContext.emit``, or a recorder in tests).
Emitter = Callable[[EventType, dict[str, Any]], Awaitable[None]]


class StepValueError(TypeError):
    """A step returned something that cannot be recorded as JSON."""


class Metered(Protocol):
    """Metered access to models and tools for one ledger scope (``run``, ``run/<stage>``,
    ``run/<stage>/<agent>``). Implemented by ``conclave.agents.meter.Meter``."""

    scope: str
    stage: str | None
    agent: str | None
    router: ModelRouter
    ledger: RunLedger

    async def chat(
        self, request: ChatRequest, *, model: str | None = None, prompt_bound: int | None = None
    ) -> ChatResponse:
        """A model call: its worst case reserved first, its usage committed with the current step.
        Raises ``BudgetExhausted`` when not even a minimal answer fits. ``prompt_bound``: the
        request's prompt upper bound, when the caller keeps it (it is computed otherwise)."""

    async def tool(self, name: str, fn: Callable[[], Awaitable[T]]) -> T:
        """A tool call under the ledger: one call of ``name`` and its price are held first."""

    def tool_amounts(self, name: str) -> dict[str, int]:
        """What one call of ``name`` holds in the ledger."""

    def child(self, name: str, *, stage: str | None = None, agent: str | None = None) -> Metered:
        """The meter of sub-scope ``<scope>/<name>``, charged to it and every scope above."""

    def observed(self, observer: Callable[[LedgerOp], None]) -> Metered:
        """The same meter, whose committed ledger ops are also shown to ``observer`` (its children's too)."""


class RunContext:
    """One attempt at executing one run, on the worker that holds its lease."""

    def __init__(
        self,
        *,
        store: RunStore,
        run_id: str,
        spec: TaskSpec,
        owner: str,
        attempt: int,
        steps: dict[str, str],
        files: dict[str, bytes],
        router: ModelRouter,
        default_model: str | None,
        started_at: float,
        last_event_id: int = 0,
        elapsed_at_open: float = 0.0,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.spec = spec
        self.owner = owner
        self.attempt = attempt
        self.resumed = bool(steps)
        self.router = router
        self.default_model = default_model
        self.started_at = started_at
        self.last_event_id = last_event_id
        # Wall time on the store's clock when this attempt began, then counted on this process's monotonic
        # clock: a worker whose wall clock is skewed still measures a run's wall_seconds right.
        self._elapsed_at_open = elapsed_at_open
        self._opened = time.monotonic()
        self._steps = dict(steps)
        self._loose = PendingCommit()  # changes made outside any step, flushed with the next commit
        self.steps_executed = 0
        self.steps_replayed = 0
        self.cancel_requested = asyncio.Event()
        #: A pause was asked: no new step starts (``step`` raises ``PauseAtBoundary``).
        self.pause_requested = False
        #: Calls that wait for a person's decision (the runner hands them to ``wait_for_approval``).
        self.approval_requests: list[ApprovalRequest] = []
        self._approvals: dict[str, Approval] | None = None
        #: The best answer so far; a cancelled or budget-stopped run reports it.
        self.partial_output: str | None = None
        self.workspace = Workspace(files, on_change=self._workspace_change)
        self.ledger = RunLedger(store, run_id, owner)
        self._meter: Metered | None = None

    def elapsed(self) -> float:
        """Wall-clock seconds since the run first started (all attempts), by the store's clock."""
        return self._elapsed_at_open + (time.monotonic() - self._opened)

    # -- the model the run should use -----------------------------------------------------------
    @property
    def model(self) -> str:
        name = self.spec.model or self.default_model
        if not name:
            raise ValueError("the task names no model and no default model is configured")
        return name

    @property
    def meter(self) -> Metered:
        if self._meter is None:
            raise RuntimeError("no meter is attached to this run context (build it with agents.runtime.open_run)")
        return self._meter

    def attach_meter(self, meter: Metered) -> None:
        self._meter = meter

    # -- durable steps --------------------------------------------------------------------------
    def committed(self, key: str) -> bool:
        return key in self._steps

    def step_keys(self) -> list[str]:
        """The keys of the steps committed so far, in no particular order."""
        return list(self._steps)

    async def step(self, key: str, fn: Callable[[], Awaitable[T]], *, model: type[BaseModel] | None = None) -> T:
        """Run ``fn`` once for the life of the run. Its value must be JSON-serialisable (or a
        pydantic model, given as ``model`` so it can be rebuilt on replay)."""
        if not key:
            raise ValueError("a step needs a non-empty key")
        if key in self._steps:
            self.steps_replayed += 1
            raw = json.loads(self._steps[key])
            return model.model_validate(raw) if model is not None else raw  # type: ignore[return-value]
        if self.pause_requested:
            raise PauseAtBoundary()
        pending = PendingCommit()
        token = _pending.set(pending)
        t0 = time.perf_counter()
        try:
            value = await fn()
        except BaseException:
            _pending.reset(token)
            # Keep the ledger honest even when the step fails: release or commit what it used.
            await asyncio.shield(self._commit(pending))
            raise
        _pending.reset(token)
        try:
            encoded = value_json(value.model_dump(mode="json") if isinstance(value, BaseModel) else value)
        except (TypeError, ValueError) as e:
            raise StepValueError(f"step {key!r} returned a value that is not JSON: {e}") from e
        await self._commit(pending, key, encoded)
        telemetry.step_done(time.perf_counter() - t0)
        self._steps[key] = encoded
        self.steps_executed += 1
        return value

    async def _commit(self, pending: PendingCommit, key: str | None = None, value: str | None = None) -> None:
        if self._loose:
            loose, self._loose = self._loose, PendingCommit()
            pending = pending.absorb(loose)
        if not pending and key is None:
            return
        # One id per commit, reused by every retry of it: the store applies a commit once.
        res = await self.store.commit(
            self.run_id, self.owner, pending, commit_id=unique_id(), step_key=key, step_value=value
        )
        self.last_event_id = max(self.last_event_id, res.last_event_id)
        if pending.ledger:
            self.ledger.applied(pending.ledger)
        if res.cancel_requested:
            self.cancel_requested.set()
        if res.pause_requested:
            self.pause_requested = True

    async def flush(self) -> None:
        """Commit changes made outside any step (events, workspace writes, ledger ops)."""
        await self._commit(PendingCommit())

    # -- people in the loop ----------------------------------------------------------------------
    async def decision(self, approval_id: str) -> Approval | None:
        """The recorded decision on a call (approved, denied, edited or expired), or None. Decisions are
        final, so they are read once per attempt."""
        if self._approvals is None:
            self._approvals = {a.id: a for a in await self.store.approvals(self.run_id)}
        a = self._approvals.get(approval_id)
        return a if a is not None and a.status is not ApprovalStatus.PENDING else None

    def wait_for(self, request: ApprovalRequest) -> WaitForPeople:
        """Note a call that needs a person; raise what this returns to leave the body."""
        if all(r.id != request.id for r in self.approval_requests):
            self.approval_requests.append(request)
        return WaitForPeople(f"the call {request.tool} waits for a decision ({request.id})")

    # -- events, ledger, workspace sinks --------------------------------------------------------
    async def emit(self, type: EventType, data: dict[str, Any] | None = None) -> None:
        """Append an event. Inside a step it commits with the step; outside, at once."""
        pending = _pending.get()
        if pending is not None:
            pending.events.append((type, data or {}))
            return
        self._loose.events.append((type, data or {}))
        await self.flush()

    async def ledger_op(self, op: LedgerOp) -> None:
        """Apply a ledger change with the current step (at once outside a step)."""
        pending = _pending.get()
        if pending is not None:
            pending.ledger.append(op)
            return
        self._loose.ledger.append(op)
        await self.flush()

    def _workspace_change(self, op: WorkspaceOp) -> None:
        pending = _pending.get() or self._loose
        pending.workspace[op.path] = op

    # -- metered access -------------------------------------------------------------------------
    def scoped(self, name: str, *, stage: str | None = None, agent: str | None = None) -> Metered:
        """A meter for a sub-scope (``run/<name>``), charged to it and every scope above."""
        return self.meter.child(name, stage=stage, agent=agent)

    def check_cancel(self) -> None:
        if self.cancel_requested.is_set():
            raise asyncio.CancelledError("cancel requested")
