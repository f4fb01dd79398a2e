"""The ``RunStore`` contract: everything durable about runs, behind one interface.

Every layer that must persist or read run state — the worker loop, a run's durable steps, the budget
ledger, the HTTP API — goes through this protocol, never through a database client. Two implementations
exist: ``RedisRunStore`` (``conclave.controller.redis_store``: Redis 7 / Valkey, every atomic change one
Lua script), the one users run, and ``InMemoryRunStore`` (``conclave.core.memory``), a test double for
fast unit tests of the orchestration. One conformance suite (``tests/conformance``) runs against every
backend, so "the store" means the same thing whichever one is plugged in.

The contract, in the order a run meets it:

- **Submission.** ``submit`` creates a ``queued`` run, appends ``run.queued`` to its event stream and puts
  an entry on the queue, atomically. With an idempotency key a second submission returns the first run
  (``created`` False) and the first spec's hash, so the caller can detect a different task.
- **Claiming.** Workers read new entries (``read_new``) and take over entries whose worker stopped renewing
  (``reclaim``: entries idle for longer than the lease). ``claim`` makes the caller's *owner token* the
  run's only writer, counts the attempt, dead-letters a run claimed more than ``max_attempts`` times,
  releases ledger holds a previous owner left, and appends ``run.started`` or ``run.resumed``.
- **Fencing.** ``commit`` and ``finish`` succeed only for the current owner: a worker that lost its lease
  cannot change the run (``commit`` raises ``LeaseLost``; ``finish`` returns False).
- **Steps.** ``commit`` applies a step atomically: its recorded value (at most once per step key), its
  events (ids increase by one from 1, no gaps), its workspace writes and its ledger ops. Every commit
  carries a ``commit_id``; a commit retried after a lost reply is applied once (a step key or the commit
  id makes it idempotent), so redis-py's retry on a dropped connection never doubles an event or a charge.
- **Ending.** ``finish`` records the terminal state, releases every ledger hold, appends ``run.finished``
  and acknowledges the queue entry, atomically. A finished run is never claimed again.
- **Ledger.** ``set_caps`` writes a run's caps once (a resumed run keeps them). ``reserve`` holds a call's
  worst case in every enclosing scope at once or refuses, naming the binding scope and limit and the room
  left there; holds expire after their TTL. Commit ops release a hold and record actual usage.
- **Events** are read with ``events`` (``after`` an id; optionally blocking for new ones).
- **Keys.** API keys are stored by the hash of their secret.
- **Steering** (pause / resume, approvals, threads, forks) is ``SteerStore``'s contract, in
  ``core/store_steer.py``; ``commit`` answers ``pause_requested`` and ``claim`` may answer ``stale`` for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Protocol, runtime_checkable

from conclave.schema import ApiKey, Event, Run, RunPage, RunStatus, TaskSpec

from .pending import PendingCommit
from .store_outbox import OutboxStore
from .store_retention import RetentionStore
from .store_schedules import ScheduleStore
from .store_stats import StatsStore
from .store_steer import SteerStore
from .store_tenants import TenantStore
from .store_types import (
    CancelOutcome,
    CancelResult,
    ClaimOutcome,
    ClaimResult,
    CommitResult,
    DeadLetter,
    FinishFields,
    LeaseLost,
    LedgerSnapshot,
    QueueDepth,
    QueueEntry,
    Refusal,
    Reserved,
    RunCaps,
    SubmitResult,
)

__all__ = [
    "CancelOutcome",
    "CancelResult",
    "ClaimOutcome",
    "ClaimResult",
    "CommitResult",
    "DeadLetter",
    "FinishFields",
    "LeaseLost",
    "LedgerSnapshot",
    "QueueDepth",
    "QueueEntry",
    "Refusal",
    "Reserved",
    "RetentionStore",
    "RunCaps",
    "RunStore",
    "SubmitResult",
    "TenantStore",
    "spec_hash",
]


def spec_hash(spec: TaskSpec) -> str:
    """What an idempotent submission compares: the spec without its idempotency key."""
    body = spec.model_dump_json(exclude={"idempotency_key"}, exclude_defaults=True)
    return hashlib.sha256(body.encode()).hexdigest()[:32]


@runtime_checkable
class RunStore(SteerStore, TenantStore, RetentionStore, OutboxStore, ScheduleStore, StatsStore, Protocol):
    """See the module docstring for the contract every method keeps; steering, tenant budgets, retention,
    the webhook outbox, schedules and the service's gauges have contracts of their own (``store_*``)."""

    # -- submission and reading ------------------------------------------------------------------
    async def ready(self) -> None:
        """Create what the store needs before workers read the queue (idempotent)."""

    async def submit(
        self,
        spec: TaskSpec,
        *,
        tenant: str = "default",
        spec_hash: str | None = None,
        trace: Mapping[str, str] | None = None,
        key_id: str | None = None,
    ) -> SubmitResult:
        """``spec_hash`` defaults to ``spec_hash(spec)``; ``trace`` is the submitter's W3C trace context;
        ``key_id`` the API key that submitted it (its budget is charged too)."""

    async def durable(self) -> None:
        """Return once what this client wrote is on disk, where the backend can tell (a submission is
        acknowledged to the user only after this)."""

    async def get(self, rid: str, *, tenant: str | None = None) -> Run | None:
        """The run, or None — also when it belongs to another tenant than ``tenant``."""

    async def get_many(self, rids: Sequence[str]) -> list[Run]: ...

    async def tenants(self) -> list[str]:
        """Every tenant that has submitted a run."""

    async def list_runs(
        self,
        *,
        tenant: str,
        status: RunStatus | None = None,
        kind: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        """Newest first; ``cursor`` is ``next_cursor`` of the previous page."""

    async def cancel(self, rid: str, *, tenant: str) -> CancelResult: ...

    def cancels(self) -> AsyncIterator[str]:
        """Run ids whose cancel was requested while they run, as it happens (a worker stops them within
        a second). Iterating ends only when the consumer stops; a dropped connection raises."""

    async def events(self, rid: str, *, after: int = 0, count: int = 500, block_ms: int | None = None) -> list[Event]:
        """Events with ids above ``after``, oldest first; with ``block_ms``, wait that long for one."""

    async def trace_context(self, rid: str) -> dict[str, str] | None:
        """The W3C trace context of the request that submitted the run."""

    # -- the worker side -------------------------------------------------------------------------
    async def read_new(self, consumer: str, count: int, block_ms: int) -> list[QueueEntry]: ...

    async def reclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[QueueEntry]: ...

    async def claim(self, rid: str, *, owner: str, qid: str, worker: str, max_attempts: int) -> ClaimResult: ...

    async def poison(self, rid: str, *, owner: str, qid: str, reason: str) -> bool:
        """Fail, dead-letter and acknowledge a claimed run whose record cannot be read (its stored spec no
        longer parses), so it never stalls a worker or comes back; False when ``owner`` lost it."""

    async def renew(self, consumer: str, leases: Sequence[tuple[str, str, str]]) -> list[str]:
        """Renew ``(rid, owner, qid)`` leases; returns the rids this worker no longer owns."""

    async def load_steps(self, rid: str) -> dict[str, str]:
        """Committed step values by step key (JSON text)."""

    async def load_workspace(self, rid: str) -> dict[str, bytes]: ...

    async def read_file(self, rid: str, path: str) -> bytes | None: ...

    async def commit(
        self,
        rid: str,
        owner: str,
        pending: PendingCommit,
        *,
        commit_id: str | None = None,
        step_key: str | None = None,
        step_value: str | None = None,
    ) -> CommitResult:
        """Apply one step (or loose changes, without a step key) atomically. Raises ``LeaseLost``.
        ``commit_id`` (one is made when not given) makes a retry of this commit apply once; pass your
        own to retry a commit yourself."""

    async def finish(self, rid: str, owner: str, status: RunStatus, fields: FinishFields) -> bool:
        """Record the terminal state; False when ``owner`` no longer owns the run."""

    async def queue_depth(self) -> QueueDepth: ...

    async def dead_letters(self, count: int = 100) -> list[DeadLetter]: ...

    # -- the ledger ------------------------------------------------------------------------------
    async def set_caps(self, rid: str, owner: str, caps: Mapping[str, int]) -> RunCaps:
        """Set ``{"<scope>|<limit>": cap}`` once per field and release holds left by other owners. Returns
        the run's caps as stored (those it first had) and whether its tenant or key has a budget."""

    async def reserve(
        self,
        rid: str,
        owner: str,
        res_id: str,
        *,
        scopes: Sequence[str],
        amounts: Mapping[str, int],
        ttl_s: float,
    ) -> Reserved | Refusal:
        """Hold ``amounts`` in every scope of ``scopes`` that has a cap, or refuse (holding nothing). A
        hold answers with the view of ``scopes`` after it (``Reserved.view``: caps, used, reserved).
        Idempotent by ``res_id``. Raises ``LeaseLost`` when ``owner`` no longer owns the run: a worker
        fenced out must not hold budget that nobody would release."""

    async def ledger_snapshot(self, rid: str) -> LedgerSnapshot: ...

    async def renew_holds(self, runs: Sequence[tuple[str, str]], *, ttl_s: float) -> set[str]:
        """Extend every hold of each ``(rid, owner)`` the owner still owns to ``ttl_s`` from now (a hold lives
        as long as its worker does); returns those rids whose tenant or key has a budget (``RunCaps.outer``:
        a budget set mid-run reaches them; a run's own caps never change)."""

    # -- API keys --------------------------------------------------------------------------------
    async def put_key(self, key_hash: str, info: ApiKey) -> None: ...

    async def get_key(self, key_hash: str) -> ApiKey | None: ...

    async def list_keys(self, tenant: str | None = None) -> list[ApiKey]: ...

    async def revoke_key(self, key_id: str) -> bool: ...

    async def close(self) -> None: ...
