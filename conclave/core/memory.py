"""``InMemoryRunStore``: the ``RunStore`` contract in this process's memory — a test double.

For fast unit tests and benchmarks of the orchestration (no server to start, nothing persisted): it keeps
every promise of the contract that one process can keep — fencing by owner token, idempotent commits,
gapless event ids, the ledger's all-scopes-at-once reservations — and is checked by the same conformance
suite as the Redis store. It is never what a user runs: nothing survives the process, and only workers in
the same process can share it.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from conclave.schema import ApiKey, Event, EventType, Run, RunPage, RunStatus, StopReason, TaskSpec, Usage

from .ids import unique_id
from .memory_ledger import MemoryLedgerMixin
from .memory_outbox import MemoryOutboxMixin
from .memory_records import _Entry, _RunData
from .memory_retention import MemoryRetention
from .memory_schedules import MemorySchedulesMixin
from .memory_steer import InMemorySteerMixin
from .pending import PendingCommit
from .store import spec_hash as hash_spec
from .store_types import (
    CancelOutcome,
    CancelResult,
    ClaimOutcome,
    ClaimResult,
    CommitResult,
    DeadLetter,
    FinishFields,
    LeaseLost,
    QueueDepth,
    QueueEntry,
    SubmitResult,
)
from .workspace import WorkspaceOpKind

__all__ = ["InMemoryRunStore"]


class InMemoryRunStore(InMemorySteerMixin, MemoryLedgerMixin, MemoryRetention, MemoryOutboxMixin, MemorySchedulesMixin):
    """See the module docstring. Not thread-safe: use it from one event loop. The steering operations
    (pause, approvals, threads, forks) are ``InMemorySteerMixin``'s, the ledger's ``MemoryLedgerMixin``'s,
    the outbox's and the schedules' their mixins'."""

    _entry_type = _Entry
    _run_data_type = _RunData

    def __init__(self) -> None:
        self._tenants_init()
        self._retention_init()
        self._runs: dict[str, _RunData] = {}
        self._idem: dict[tuple[str, str], str] = {}
        self._queue: list[_Entry] = []
        self._qseq = 0
        self._dead: list[DeadLetter] = []
        self._keys: dict[str, ApiKey] = {}
        self._changed = asyncio.Condition()
        self._cancel_watchers: list[asyncio.Queue[str]] = []
        self._steer_init()

    # -- helpers ---------------------------------------------------------------------------------
    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _wait(self, timeout_s: float) -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait(), timeout_s)
            except TimeoutError:
                pass

    def _emit(self, d: _RunData, etype: EventType, data: dict[str, Any], now: float) -> int:
        seq = d.run.last_event_id + 1
        d.events.append(
            Event(id=seq, run_id=d.run.id, type=etype, ts=now, data=json.loads(json.dumps(data, default=str)))
        )
        d.run = d.run.model_copy(update={"last_event_id": seq})
        self._outbox_record(d.run, seq, etype, data, now)  # memory_outbox: the twin of outbox.lua
        return seq

    def _set(self, d: _RunData, **changes: Any) -> None:
        was_terminal = d.run.status.terminal
        d.run = d.run.model_copy(update=changes)
        if not was_terminal and d.run.status.terminal:
            self._retire(d.run.id, d.run.tenant)

    def _ack(self, qid: str) -> None:
        self._queue = [e for e in self._queue if e.qid != qid]

    # -- submission and reading ------------------------------------------------------------------
    async def ready(self) -> None:
        return None

    async def submit(
        self,
        spec: TaskSpec,
        *,
        tenant: str = "default",
        spec_hash: str | None = None,
        trace: Mapping[str, str] | None = None,
        key_id: str | None = None,
    ) -> SubmitResult:
        spec_hash = spec_hash or hash_spec(spec)
        if spec.idempotency_key:
            existing = self._idem.get((tenant, spec.idempotency_key))
            if existing is not None:
                d = self._runs[existing]
                return SubmitResult(run=d.run, created=False, spec_hash=d.spec_hash)
        now = time.time()
        rid = f"run_{int(now * 1000):011x}{secrets.token_hex(6)}"
        run = Run(id=rid, tenant=tenant, spec=spec, status=RunStatus.QUEUED, created_at=_dt(now), key_id=key_id)
        d = _RunData(run=run, spec_hash=spec_hash, key_id=key_id, trace=dict(trace) if trace else None)
        self._runs[rid] = d
        if spec.idempotency_key:
            self._idem[(tenant, spec.idempotency_key)] = rid
        self._qseq += 1
        d.qid = f"{int(now * 1000)}-{self._qseq}"
        self._queue.append(_Entry(d.qid, rid))
        self._emit(d, "run.queued", {"kind": spec.kind}, now)
        await self._notify()
        return SubmitResult(run=d.run, created=True, spec_hash=spec_hash)

    async def durable(self) -> None:
        return None

    async def get(self, rid: str, *, tenant: str | None = None) -> Run | None:
        d = self._runs.get(rid)
        if d is None or (tenant is not None and d.run.tenant != tenant):
            return None
        return d.run

    async def tenants(self) -> list[str]:
        return sorted({d.run.tenant for d in self._runs.values()})

    async def get_many(self, rids: Sequence[str]) -> list[Run]:
        return [self._runs[r].run for r in rids if r in self._runs]

    async def list_runs(
        self,
        *,
        tenant: str,
        status: RunStatus | None = None,
        kind: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        rows = [
            d.run
            for d in self._runs.values()
            if d.run.tenant == tenant
            and (status is None or d.run.status == status)
            and (kind is None or d.run.spec.kind == kind)
        ]
        rows.sort(key=lambda r: (int(r.created_at.timestamp() * 1000), r.id), reverse=True)
        if cursor:
            ms_s, _, after = cursor.partition(":")
            ms = int(float(ms_s))
            rows = [r for r in rows if (int(r.created_at.timestamp() * 1000), r.id) < (ms, after)]
        page, more = rows[:limit], len(rows) > limit
        nxt = f"{int(page[-1].created_at.timestamp() * 1000)}:{page[-1].id}" if more and page else None
        return RunPage(runs=page, next_cursor=nxt)

    async def cancel(self, rid: str, *, tenant: str) -> CancelResult:
        d = self._runs.get(rid)
        if d is None or d.run.tenant != tenant:
            return CancelResult(CancelOutcome.MISSING)
        if d.run.status.terminal:
            return CancelResult(CancelOutcome.TERMINAL, d.run.status)
        if d.run.status == RunStatus.RUNNING and d.run.cancel_requested:
            return CancelResult(CancelOutcome.CANCELLING)
        now = time.time()
        self._set(d, cancel_requested=True)
        self._emit(d, "run.cancel_requested", {}, now)
        if d.run.status in (RunStatus.QUEUED, RunStatus.PAUSED, RunStatus.WAITING):  # no worker holds it
            self._set(d, status=RunStatus.CANCELLED, stop_reason=StopReason.CANCELLED, finished_at=_dt(now))
            self._steer_ended(d, now)
            self._emit(d, "run.finished", {"status": "cancelled", "stop_reason": "cancelled"}, now)
            await self._notify()
            return CancelResult(CancelOutcome.CANCELLED)
        for q in self._cancel_watchers:
            q.put_nowait(rid)
        await self._notify()
        return CancelResult(CancelOutcome.CANCELLING)

    async def cancels(self) -> AsyncIterator[str]:
        q: asyncio.Queue[str] = asyncio.Queue()
        self._cancel_watchers.append(q)
        try:
            while True:
                yield await q.get()
        finally:
            self._cancel_watchers.remove(q)

    async def events(self, rid: str, *, after: int = 0, count: int = 500, block_ms: int | None = None) -> list[Event]:
        d = self._runs.get(rid)
        out = [e for e in (d.events if d else []) if e.id > after][:count]
        if out or block_ms is None:
            return out
        await self._wait(block_ms / 1000)
        d = self._runs.get(rid)
        return [e for e in (d.events if d else []) if e.id > after][:count]

    async def trace_context(self, rid: str) -> dict[str, str] | None:
        d = self._runs.get(rid)
        return d.trace if d else None

    # -- the worker side -------------------------------------------------------------------------
    async def read_new(self, consumer: str, count: int, block_ms: int) -> list[QueueEntry]:
        for attempt in (0, 1):
            fresh = [e for e in self._queue if e.consumer is None][:count]
            if fresh or attempt:
                now = time.monotonic()
                for e in fresh:
                    e.consumer, e.delivered_at = consumer, now
                return [QueueEntry(e.qid, e.rid) for e in fresh]
            await self._wait(block_ms / 1000)
        return []  # pragma: no cover - the loop returns

    async def reclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[QueueEntry]:
        now = time.monotonic()
        out: list[QueueEntry] = []
        for e in self._queue:
            if len(out) >= count:
                break
            if e.consumer is not None and (now - e.delivered_at) * 1000 >= min_idle_ms:
                e.consumer, e.delivered_at = consumer, now
                out.append(QueueEntry(e.qid, e.rid))
        return out

    async def claim(self, rid: str, *, owner: str, qid: str, worker: str, max_attempts: int) -> ClaimResult:
        d = self._runs.get(rid)
        now = time.time()
        if d is not None and d.owner == owner:
            return ClaimResult(
                ClaimOutcome.OK, attempt=d.run.attempts, clock=now, started_at=_ts(d.run.started_at, now)
            )
        if d is None:
            self._dead.append(DeadLetter(id=qid, rid=rid, reason="the queue entry names no run that exists"))
            self._ack(qid)
            return ClaimResult(ClaimOutcome.MISSING)
        if d.run.status.terminal:
            self._ack(qid)
            return ClaimResult(ClaimOutcome.TERMINAL, status=d.run.status)
        if self._steer_stale(d, qid):
            self._ack(qid)
            return ClaimResult(ClaimOutcome.STALE, status=d.run.status)
        attempts = d.run.attempts + 1
        self._set(d, attempts=attempts)
        if d.run.cancel_requested:
            self._set(d, status=RunStatus.CANCELLED, stop_reason=StopReason.CANCELLED, finished_at=_dt(now))
            d.owner = None
            self._steer_ended(d, now)
            self._emit(d, "run.finished", {"status": "cancelled", "stop_reason": "cancelled"}, now)
            self._ack(qid)
            return ClaimResult(ClaimOutcome.TERMINAL, status=RunStatus.CANCELLED)
        if attempts - self._steer_clean(rid) > max_attempts:
            msg = (
                f"the run was started {attempts - 1 - self._steer_clean(rid)} times and its worker died each time; "
                "dead-lettered"
            )
            self._set(
                d,
                status=RunStatus.FAILED,
                stop_reason=StopReason.CRASHED,
                stop_detail=msg,
                error=msg,
                finished_at=_dt(now),
            )
            d.owner = None
            self._dead.append(DeadLetter(id=qid, rid=rid, reason=msg, attempts=attempts - 1))
            self._steer_ended(d, now)
            self._emit(d, "run.finished", {"status": "failed", "stop_reason": "crashed", "error": msg}, now)
            self._ack(qid)
            return ClaimResult(ClaimOutcome.DEAD, attempt=attempts)
        d.owner, d.qid = owner, qid
        self._release_where(d, lambda h: h.owner == owner)
        if d.run.started_at is None:
            self._set(d, started_at=_dt(now))
        self._set(d, status=RunStatus.RUNNING)
        self._emit(d, "run.started" if attempts == 1 else "run.resumed", {"attempt": attempts, "worker": worker}, now)
        await self._notify()
        return ClaimResult(ClaimOutcome.OK, attempt=attempts, clock=now, started_at=_ts(d.run.started_at, now))

    async def poison(self, rid: str, *, owner: str, qid: str, reason: str) -> bool:
        d = self._runs.get(rid)
        if d is None or d.owner != owner:
            return False
        now = time.time()
        self._set(
            d,
            status=RunStatus.FAILED,
            stop_reason=StopReason.ERROR,
            stop_detail=reason,
            error=reason,
            finished_at=_dt(now),
        )
        d.owner = None
        self._release_where(d, lambda h: False)
        self._steer_ended(d, now)
        self._dead.append(DeadLetter(id=qid, rid=rid, reason=reason, attempts=d.run.attempts))
        self._emit(d, "run.finished", {"status": "failed", "stop_reason": "error", "error": reason}, now)
        self._ack(qid)
        await self._notify()
        return True

    async def renew(self, consumer: str, leases: Sequence[tuple[str, str, str]]) -> list[str]:
        lost = []
        now = time.monotonic()
        for rid, owner, qid in leases:
            d = self._runs.get(rid)
            if d is None or d.owner != owner:
                lost.append(rid)
                continue
            for e in self._queue:
                if e.qid == qid:
                    e.consumer, e.delivered_at = consumer, now
        return lost

    async def load_steps(self, rid: str) -> dict[str, str]:
        d = self._runs.get(rid)
        return dict(d.steps) if d else {}

    async def load_workspace(self, rid: str) -> dict[str, bytes]:
        d = self._runs.get(rid)
        return dict(d.files) if d else {}

    async def read_file(self, rid: str, path: str) -> bytes | None:
        d = self._runs.get(rid)
        return d.files.get(path) if d else None

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
        commit_id = commit_id or unique_id()
        d = self._runs.get(rid)
        if d is None:
            raise LeaseLost(rid)
        applied = step_key in d.steps if step_key else commit_id in d.commits
        if applied:
            return CommitResult(d.run.last_event_id, d.run.cancel_requested, bool(d.run.pause_requested))
        if d.owner != owner:
            raise LeaseLost(rid)
        if step_key:
            d.steps[step_key] = step_value or ""
        else:
            d.commits.add(commit_id)
        now = time.time()
        for etype, data in pending.events:
            self._emit(d, etype, data, now)
        self._steer_committed(d, pending)
        for op in pending.workspace.values():
            if op.op is WorkspaceOpKind.WRITE:
                d.files[op.path] = op.content
            else:
                d.files.pop(op.path, None)
        for lop in pending.ledger:
            self._ledger_commit(d, lop, now)
        if step_key:
            self._steer_step_done(d, step_key)
        if pending.events:
            await self._notify()
        return CommitResult(d.run.last_event_id, d.run.cancel_requested, bool(d.run.pause_requested))

    async def finish(self, rid: str, owner: str, status: RunStatus, fields: FinishFields) -> bool:
        d = self._runs.get(rid)
        if d is None:
            return False
        if d.owner != owner:
            return d.owner is None and d.run.status == status  # a retried finish whose reply was lost
        now = time.time()
        self._set(
            d,
            status=status,
            stop_reason=fields.stop_reason,
            stop_detail=fields.stop_detail,
            output=fields.output,
            result=fields.result,
            error=fields.error,
            cost=fields.cost,
            cost_usd=fields.cost.total.usd if fields.cost else 0.0,
            usage=fields.usage or Usage(),
            exhausted_limit=fields.exhausted_limit,
            finished_at=_dt(now),
        )
        d.owner = None
        self._release_where(d, lambda h: False)
        self._steer_ended(d, now)
        event: dict[str, Any] = {"status": status.value, "stop_reason": fields.stop_reason.value}
        if fields.stop_detail:
            event["detail"] = fields.stop_detail
        self._emit(d, "run.finished", event, now)
        self._ack(d.qid)
        await self._notify()
        return True

    async def queue_depth(self) -> QueueDepth:
        waiting = sum(1 for e in self._queue if e.consumer is None)
        return QueueDepth(waiting=waiting, in_flight=len(self._queue) - waiting)

    async def dead_letters(self, count: int = 100) -> list[DeadLetter]:
        return list(reversed(self._dead))[:count]

    # -- API keys --------------------------------------------------------------------------------
    async def put_key(self, key_hash: str, info: ApiKey) -> None:
        self._keys[key_hash] = info

    async def get_key(self, key_hash: str) -> ApiKey | None:
        return self._keys.get(key_hash)

    async def list_keys(self, tenant: str | None = None) -> list[ApiKey]:
        rows = [k for k in self._keys.values() if tenant is None or k.tenant == tenant]
        return sorted(rows, key=lambda k: k.created_at)

    async def revoke_key(self, key_id: str) -> bool:
        for h, info in self._keys.items():
            if info.id == key_id:
                self._keys[h] = info.model_copy(update={"revoked": True})
                return True
        return False

    async def close(self) -> None:
        return None


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _ts(when: datetime | None, default: float) -> float:
    """A record's time as Unix seconds, never later than ``default`` (datetimes keep microseconds only)."""
    return min(when.timestamp(), default) if when is not None else default
