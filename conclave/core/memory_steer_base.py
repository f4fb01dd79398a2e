"""The state and private helpers that the in-memory ``SteerStore`` mixins share (a test double,
like ``InMemoryRunStore``): per-run steering records, threads, and the hooks that the store's shared
methods call where the Lua scripts call ``lua/steer.lua``'s. The contract's methods are in
``memory_steer`` (pause, resume, forks), ``memory_approvals`` and ``memory_threads``."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from conclave.schema import (
    Approval,
    ApprovalStatus,
    Event,
    EventType,
    Run,
    RunStatus,
    TaskSpec,
    Thread,
)

from .pending import PendingCommit

__all__ = ["InMemorySteerBase"]

_DECIDED = {"approve": ApprovalStatus.APPROVED, "deny": ApprovalStatus.DENIED, "edit": ApprovalStatus.EDITED}


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class _RunData(Protocol):
    """What the mixin uses of ``InMemoryRunStore``'s per-run record."""

    run: Run
    spec_hash: str
    owner: str | None
    qid: str
    trace: dict[str, str] | None
    events: list[Event]
    steps: dict[str, str]
    files: dict[str, bytes]


@dataclass
class _SteerRun:
    """What steering adds to one run in memory."""

    clean: int = 0  # clean hand-overs (pause, wait): not crashes
    idle_since: float | None = None
    order: list[tuple[int, str]] = field(default_factory=list)  # (last event id, step key)
    undo: list[tuple[int, str, bytes | None]] = field(default_factory=list)  # (step index, path, previous bytes)
    approvals: dict[str, Approval] = field(default_factory=dict)  # in request order
    pending: set[str] = field(default_factory=set)
    timeouts: dict[str, float] = field(default_factory=dict)  # approval id -> timeout seconds
    thread: str | None = None
    thread_seq: int = 0


@dataclass
class _Thread:
    record: Thread
    runs: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    dropped: set[str] = field(default_factory=set)


class InMemorySteerBase:
    """Uses ``InMemoryRunStore``'s private state (``_runs``, ``_queue``, ``_idem``…)."""

    _runs: dict[str, Any]  # rid -> the store's _RunData
    _idem: dict[tuple[str, str], str]
    _queue: list[Any]  # the store's _Entry
    _qseq: int
    _cancel_watchers: list[Any]
    #: The store's record types (set by ``InMemoryRunStore``), so this module needs no import of it.
    _entry_type: Callable[[str, str], Any]
    _run_data_type: Callable[..., Any]

    if TYPE_CHECKING:

        async def get(self, rid: str, *, tenant: str | None = None) -> Run | None: ...

        async def _notify(self) -> None: ...

        # the store's own helpers; ``d`` is its _RunData
        def _emit(self, d: Any, etype: EventType, data: dict[str, Any], now: float) -> int: ...

        def _set(self, d: Any, **changes: Any) -> None: ...

        def _ack(self, qid: str) -> None: ...

        def _release_where(self, d: Any, keep: Any) -> None: ...

    def _steer_init(self) -> None:
        self._steer: dict[str, _SteerRun] = {}
        self._threads: dict[tuple[str, str], _Thread] = {}

    def _sx(self, rid: str) -> _SteerRun:
        return self._steer.setdefault(rid, _SteerRun())

    # -- hooks the shared methods call ------------------------------------------------------------
    def _steer_clean(self, rid: str) -> int:
        return self._sx(rid).clean

    def _steer_stale(self, d: _RunData, qid: str) -> bool:
        if d.run.status in (RunStatus.PAUSED, RunStatus.WAITING):
            return True
        return bool(d.qid) and d.qid != qid

    def _steer_committed(self, d: _RunData, pending: PendingCommit) -> None:
        """Before a commit's changes apply: what its workspace ops overwrite."""
        sx = self._sx(d.run.id)
        tag = len(sx.order)
        for op in pending.workspace.values():
            sx.undo.append((tag, op.path, d.files.get(op.path)))

    def _steer_step_done(self, d: _RunData, step_key: str) -> None:
        self._sx(d.run.id).order.append((d.run.last_event_id, step_key))

    def _steer_ended(self, d: _RunData, now: float) -> None:
        """Hook of every terminal transition, called before its ``run.finished``."""
        self._close_approvals(d, now, "the run ended before this call was decided")
        self._set(d, pause_requested=None)
        self._release_thread(d)

    # -- helpers ----------------------------------------------------------------------------------
    def _enqueue(self, d: _RunData) -> None:
        self._qseq += 1
        d.qid = f"{int(time.time() * 1000)}-{self._qseq}"
        self._queue.append(self._entry_type(d.qid, d.run.id))

    def _thread_of(self, d: _RunData) -> _Thread | None:
        tid = self._sx(d.run.id).thread
        return self._threads.get((d.run.tenant, tid)) if tid else None

    def _start(self, d: _RunData) -> str:
        t = self._thread_of(d)
        if t is not None:
            active = t.record.active_run
            if active and active != d.run.id:
                if d.run.id not in t.pending:
                    t.pending.append(d.run.id)
                d.qid = ""
                return "enqueued"
            t.record = t.record.model_copy(update={"active_run": d.run.id})
        self._enqueue(d)
        return "started"

    def _release_thread(self, d: _RunData) -> None:
        t = self._thread_of(d)
        if t is None:
            return
        if d.run.id in t.pending:
            t.pending.remove(d.run.id)
        if t.record.active_run != d.run.id:
            return
        t.record = t.record.model_copy(update={"active_run": None})
        while t.pending:
            nxt = self._runs[t.pending.pop(0)]
            if nxt.run.status is RunStatus.QUEUED:
                t.record = t.record.model_copy(update={"active_run": nxt.run.id})
                self._enqueue(nxt)
                return

    def _wake(self, d: _RunData, now: float) -> None:
        sx = self._sx(d.run.id)
        if sx.idle_since is not None:
            self._set(d, idle_seconds=d.run.idle_seconds + max(0.0, now - sx.idle_since))
            sx.idle_since = None

    def _close_approvals(self, d: _RunData, now: float, reason: str) -> None:
        sx = self._sx(d.run.id)
        for aid in sorted(sx.pending):
            sx.approvals[aid] = sx.approvals[aid].model_copy(
                update={"status": ApprovalStatus.EXPIRED, "reason": reason, "decided_at": _dt(now)}
            )
            self._emit(d, "approval.resolved", {"approval_id": aid, "status": "expired", "reason": reason}, now)
        sx.pending.clear()

    def _to_paused(self, d: _RunData, reason: str, detail: str | None, now: float) -> None:
        sx = self._sx(d.run.id)
        self._release_where(d, lambda h: False)
        d.owner = None
        self._set(d, status=RunStatus.PAUSED, pause_requested=None, pause_reason=reason)
        if sx.idle_since is None:
            sx.idle_since = now
        ev: dict[str, Any] = {"reason": reason}
        if detail:
            ev["detail"] = detail
        self._emit(d, "run.paused", ev, now)
        if reason == "interrupt":
            self._release_thread(d)

    def _new_run(self, spec: TaskSpec, tenant: str, spec_hash: str, now: float, key_id: str | None) -> _RunData:
        rid = f"run_{int(now * 1000):011x}{secrets.token_hex(6)}"
        run = Run(id=rid, tenant=tenant, spec=spec, status=RunStatus.QUEUED, created_at=_dt(now), key_id=key_id)
        d: _RunData = self._run_data_type(run=run, spec_hash=spec_hash, key_id=key_id)
        self._runs[rid] = d
        return d
