"""What a run body sees: its spec, durable steps, events, metered models and tools, its workspace.

``step(key, fn)`` is the unit of durability. A step whose key was committed before is not run
again: its recorded value is returned. A step that runs commits its value, the events it emitted,
its workspace changes and its ledger ops in one Lua call, so a worker killed at any instant leaves
either all of a step or none of it. Step keys must be deterministic for a given run history.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from conclave.budgets.ledger import Ledger
from conclave.budgets.meter import Meter
from conclave.budgets.pricing import Pricing
from conclave.cluster.router import ModelRouter
from conclave.controller.store import PendingCommit, RunStore, WorkspaceOp
from conclave.schema import TaskSpec

from .workspace import Workspace

__all__ = ["RunContext", "StepValueError"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_pending: contextvars.ContextVar[PendingCommit | None] = contextvars.ContextVar("conclave_pending", default=None)


class StepValueError(TypeError):
    """A step returned something that cannot be recorded as JSON."""


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
        pricing: Pricing,
        ledger: Ledger,
        default_model: str | None,
        started_at: float,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.spec = spec
        self.owner = owner
        self.attempt = attempt
        self.resumed = bool(steps)
        self.router = router
        self.pricing = pricing
        self.ledger = ledger
        self.default_model = default_model
        self.started_at = started_at
        self._steps = dict(steps)
        self._loose = PendingCommit()  # changes made outside any step, flushed with the next commit
        self.steps_executed = 0
        self.steps_replayed = 0
        self.cancel_requested = asyncio.Event()
        self.last_event_id = 0
        #: The best answer so far; a cancelled or budget-stopped run reports it.
        self.partial_output: str | None = None
        self.workspace = Workspace(files, on_change=self._workspace_change)
        self.meter = Meter(ledger=ledger, pricing=pricing, router=router, sink=self)

    # -- the model the run should use -----------------------------------------------------------
    @property
    def model(self) -> str:
        name = self.spec.model or self.default_model
        if not name:
            raise ValueError("the task names no model and no default model is configured")
        return name

    # -- durable steps --------------------------------------------------------------------------
    def committed(self, key: str) -> bool:
        return key in self._steps

    async def step(self, key: str, fn: Callable[[], Awaitable[T]], *, model: type[BaseModel] | None = None) -> T:
        """Run ``fn`` once for the life of the run. Its value must be JSON-serialisable (or a
        pydantic model, given as ``model`` so it can be rebuilt on replay)."""
        if not key:
            raise ValueError("a step needs a non-empty key")
        if key in self._steps:
            self.steps_replayed += 1
            raw = json.loads(self._steps[key])
            return model.model_validate(raw) if model is not None else raw  # type: ignore[return-value]
        pending = PendingCommit()
        token = _pending.set(pending)
        try:
            value = await fn()
        except BaseException:
            _pending.reset(token)
            # Keep the ledger honest even when the step fails: release or commit what it used.
            await asyncio.shield(self._flush(pending))
            raise
        _pending.reset(token)
        try:
            encoded = json.dumps(value.model_dump(mode="json") if isinstance(value, BaseModel) else value)
        except (TypeError, ValueError) as e:
            raise StepValueError(f"step {key!r} returned a value that is not JSON: {e}") from e
        await self._commit(key, encoded, pending)
        self._steps[key] = encoded
        self.steps_executed += 1
        return value

    async def _commit(self, key: str, value: str, pending: PendingCommit) -> None:
        if self._loose.events or self._loose.workspace or self._loose.ledger:
            loose, self._loose = self._loose, PendingCommit()
            pending = PendingCommit(
                events=loose.events + pending.events,
                workspace={**loose.workspace, **pending.workspace},
                ledger=loose.ledger + pending.ledger,
            )
        seq, cancel = await self.store.commit(self.run_id, self.owner, key, value, pending)
        self.last_event_id = max(self.last_event_id, seq)
        if cancel:
            self.cancel_requested.set()

    async def _flush(self, pending: PendingCommit) -> None:
        if pending.events or pending.workspace or pending.ledger:
            await self._commit("", "", pending)

    async def flush(self) -> None:
        """Commit changes made outside any step (events, workspace writes, ledger ops)."""
        loose, self._loose = self._loose, PendingCommit()
        await self._flush(loose)

    # -- events, ledger, workspace sinks --------------------------------------------------------
    async def emit(self, type: str, data: dict[str, Any] | None = None) -> None:
        """Append an event. Inside a step it commits with the step; outside, at once."""
        pending = _pending.get()
        if pending is not None:
            pending.events.append((type, data or {}))
            return
        self._loose.events.append((type, data or {}))
        await self.flush()

    async def ledger_op(self, op: dict[str, Any]) -> None:
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
    def scoped(self, name: str, *, stage: str | None = None, agent: str | None = None) -> Meter:
        """A meter for a sub-scope (``run/<name>``), charged to it and every scope above."""
        return self.meter.child(name, stage=stage, agent=agent)

    def check_cancel(self) -> None:
        if self.cancel_requested.is_set():
            raise asyncio.CancelledError("cancel requested")
