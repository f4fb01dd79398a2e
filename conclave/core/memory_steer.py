"""The ``SteerStore`` contract in memory: a mixin of ``InMemoryRunStore`` (a test double, like it).

It keeps the same promises as the Redis scripts — the first decision wins, waiting and paused runs hold
nothing, a stale queue entry is acknowledged, threads start their runs one at a time, a fork rebuilds the
workspace as it was after its step — so the orchestration above can be unit-tested without a server. The
shared methods of ``InMemoryRunStore`` call the ``_steer_*`` hooks where the Lua scripts call
``lua/steer.lua``'s.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from conclave.schema import (
    LIFECYCLE_EVENTS,
    Approval,
    ApprovalStatus,
    Decision,
    Event,
    EventType,
    MultitaskPolicy,
    Run,
    RunStatus,
    StepInfo,
    StopReason,
    TaskSpec,
    Thread,
    ThreadPage,
)

from .pending import PendingCommit
from .store import spec_hash as hash_spec
from .store_steer import (
    ApprovalRequest,
    DecideOutcome,
    DecideResult,
    ForkOutcome,
    ForkResult,
    MessageOutcome,
    MessageResult,
    PauseOutcome,
    PauseReason,
    PauseResult,
    ResumeOutcome,
    ResumeResult,
    ThreadResult,
)

__all__ = ["InMemorySteerMixin"]

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


class InMemorySteerMixin:
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

    # -- pause and resume -------------------------------------------------------------------------
    async def request_pause(self, rid: str, *, tenant: str, reason: PauseReason = "user") -> PauseResult:
        d = self._runs.get(rid)
        if d is None or d.run.tenant != tenant:
            return PauseResult(PauseOutcome.MISSING)
        st = d.run.status
        if st.terminal:
            return PauseResult(PauseOutcome.TERMINAL, st)
        if st is RunStatus.WAITING:
            return PauseResult(PauseOutcome.WAITING)
        if st is RunStatus.PAUSED:
            return PauseResult(PauseOutcome.PAUSED)
        now = time.time()
        if st is RunStatus.QUEUED:
            self._to_paused(d, reason, "paused before a worker took it", now)
            await self._notify()
            return PauseResult(PauseOutcome.PAUSED)
        if not d.run.pause_requested:
            self._set(d, pause_requested=reason)
            self._emit(d, "run.pause_requested", {"reason": reason}, now)
            await self._notify()
        return PauseResult(PauseOutcome.PAUSING)

    async def pause(
        self, rid: str, owner: str, *, reason: PauseReason, detail: str | None = None, output: str | None = None
    ) -> bool:
        d = self._runs.get(rid)
        if d is None:
            return False
        if d.owner != owner:
            return d.owner is None and d.run.status is RunStatus.PAUSED
        self._sx(rid).clean += 1
        if output:
            self._set(d, output=output)
        self._to_paused(d, reason, detail, time.time())
        self._ack(d.qid)
        await self._notify()
        return True

    async def resume(self, rid: str, *, tenant: str) -> ResumeResult:
        d = self._runs.get(rid)
        if d is None or d.run.tenant != tenant:
            return ResumeResult(ResumeOutcome.MISSING)
        if d.run.status is not RunStatus.PAUSED:
            return ResumeResult(ResumeOutcome.NOT_PAUSED, d.run.status)
        if d.run.pause_reason == "interrupt" and self._sx(rid).thread:
            return ResumeResult(ResumeOutcome.SUPERSEDED)
        now = time.time()
        self._wake(d, now)
        self._set(d, status=RunStatus.QUEUED, pause_reason=None, pause_requested=None)
        self._emit(d, "run.resumed", {"reason": "resume"}, now)
        how = self._start(d)
        await self._notify()
        return ResumeResult(ResumeOutcome.ENQUEUED if how == "enqueued" else ResumeOutcome.RESUMED)

    async def paused_runs(self, tenant: str, *, reason: PauseReason | None = None) -> list[str]:
        rows = [
            d.run
            for d in self._runs.values()
            if d.run.tenant == tenant
            and d.run.status is RunStatus.PAUSED
            and (reason is None or d.run.pause_reason == reason)
        ]
        return [r.id for r in sorted(rows, key=lambda r: (r.created_at, r.id))]

    # -- approvals --------------------------------------------------------------------------------
    async def wait_for_approval(
        self, rid: str, owner: str, requests: Sequence[ApprovalRequest], *, output: str | None = None
    ) -> bool:
        if not requests:
            raise ValueError("wait_for_approval needs at least one request")
        d = self._runs.get(rid)
        if d is None:
            return False
        if d.owner != owner:
            return d.owner is None and d.run.status is RunStatus.WAITING
        sx = self._sx(rid)
        now = time.time()
        for r in requests:
            if r.id in sx.approvals:
                continue
            sx.approvals[r.id] = Approval(
                id=r.id,
                run_id=rid,
                tool=r.tool,
                kind=r.kind,
                arguments=dict(r.arguments),
                step_key=r.step_key,
                requested_at=_dt(now),
                reserve={k: int(v) for k, v in r.reserve.items()},
                expires_at=_dt(now + r.timeout_s) if r.timeout_s is not None else None,
                on_timeout=r.on_timeout,
                parameters=dict(r.parameters),
            )
            sx.pending.add(r.id)
            if r.timeout_s is not None:
                sx.timeouts[r.id] = r.timeout_s
            event: dict[str, Any] = {
                "approval_id": r.id,
                "tool": r.tool,
                "kind": r.kind,
                "arguments": dict(r.arguments),
                "step_key": r.step_key,
                "reserve": dict(r.reserve),
            }
            if r.timeout_s is not None:
                event |= {"timeout_s": r.timeout_s, "on_timeout": r.on_timeout}
            self._emit(d, "approval.requested", event, now)
        if not sx.pending:
            raise ValueError(f"wait: run {rid} has no pending approval to wait for")
        sx.clean += 1
        if output:
            self._set(d, output=output)
        self._release_where(d, lambda h: False)
        self._set(d, status=RunStatus.WAITING)
        d.owner = None
        sx.idle_since = now
        self._emit(d, "run.waiting", {"approvals": sorted(sx.pending)}, now)
        self._ack(d.qid)
        await self._notify()
        return True

    async def approvals(self, rid: str) -> list[Approval]:
        return list(self._sx(rid).approvals.values()) if rid in self._runs else []

    async def list_approvals(
        self, tenant: str, *, status: ApprovalStatus | None = None, limit: int = 100
    ) -> list[Approval]:
        rows = [
            a
            for d in self._runs.values()
            if d.run.tenant == tenant
            for a in self._sx(d.run.id).approvals.values()
            if status is None or a.status is status
        ]
        rows.sort(key=lambda a: (a.requested_at, a.run_id, a.id), reverse=True)
        return rows[:limit]

    async def decide(
        self,
        rid: str,
        approval_id: str,
        *,
        tenant: str,
        decision: Decision,
        reason: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        answer: str | None = None,
    ) -> DecideResult:
        d = self._runs.get(rid)
        if d is None or d.run.tenant != tenant:
            return DecideResult(DecideOutcome.MISSING)
        sx = self._sx(rid)
        a = sx.approvals.get(approval_id)
        if a is None:
            if d.run.status is not RunStatus.WAITING:
                return DecideResult(DecideOutcome.NOT_WAITING, status=d.run.status)
            return DecideResult(DecideOutcome.MISSING)
        if a.status is not ApprovalStatus.PENDING:
            return DecideResult(DecideOutcome.ALREADY_DECIDED, approval=a, status=d.run.status)
        if d.run.status is not RunStatus.WAITING:  # pragma: no cover - pending implies waiting
            return DecideResult(DecideOutcome.NOT_WAITING, approval=a, status=d.run.status)
        now = time.time()
        status = _DECIDED[decision]
        a = a.model_copy(
            update={
                "status": status,
                "decided_at": _dt(now),
                "reason": reason or None,
                "edited_arguments": dict(arguments) if arguments is not None else None,
                "answer": answer or None,
            }
        )
        sx.approvals[approval_id] = a
        sx.pending.discard(approval_id)
        event: dict[str, Any] = {"approval_id": approval_id, "status": status.value, "decision": decision}
        if reason:
            event["reason"] = reason
        if arguments is not None:
            event["edited_arguments"] = dict(arguments)
        if answer:
            event["answer"] = answer[:4000]
        self._emit(d, "approval.resolved", event, now)
        resumed = False
        if not sx.pending:
            self._wake(d, now)
            self._set(d, status=RunStatus.QUEUED)
            self._emit(d, "run.resumed", {"reason": "approval"}, now)
            self._enqueue(d)
            resumed = True
        await self._notify()
        return DecideResult(DecideOutcome.DECIDED, approval=a, status=d.run.status, resumed=resumed)

    async def expire_approvals(self, *, limit: int = 100) -> int:
        now = time.time()
        n = 0
        for d in list(self._runs.values()):
            sx = self._sx(d.run.id)
            for aid in sorted(sx.pending):
                a = sx.approvals[aid]
                if n >= limit or a.expires_at is None or a.expires_at.timestamp() > now:
                    continue
                reason = f"no decision within {sx.timeouts[aid]!r} s"
                sx.approvals[aid] = a.model_copy(
                    update={"status": ApprovalStatus.EXPIRED, "reason": reason, "decided_at": _dt(now)}
                )
                sx.pending.discard(aid)
                self._emit(
                    d,
                    "approval.resolved",
                    {"approval_id": aid, "status": "expired", "reason": reason, "on_timeout": a.on_timeout},
                    now,
                )
                n += 1
                if d.run.status is not RunStatus.WAITING:
                    continue
                if a.on_timeout == "fail":
                    msg = f"the call {a.tool} waited for approval longer than {sx.timeouts[aid]!r} s"
                    self._set(
                        d,
                        status=RunStatus.FAILED,
                        stop_reason=StopReason.APPROVAL_TIMEOUT,
                        stop_detail=msg,
                        error=msg,
                        finished_at=_dt(now),
                    )
                    self._steer_ended(d, now)
                    self._emit(
                        d, "run.finished", {"status": "failed", "stop_reason": "approval_timeout", "detail": msg}, now
                    )
                elif not sx.pending:
                    self._wake(d, now)
                    self._set(d, status=RunStatus.QUEUED)
                    self._emit(d, "run.resumed", {"reason": "approval_timeout"}, now)
                    self._enqueue(d)
        if n:
            await self._notify()
        return n

    # -- steps and forks --------------------------------------------------------------------------
    async def step_log(self, rid: str) -> list[StepInfo]:
        if rid not in self._runs:
            return []
        return [StepInfo(key=k, index=i, event_id=seq) for i, (seq, k) in enumerate(self._sx(rid).order)]

    async def fork(
        self,
        rid: str,
        *,
        tenant: str,
        step_key: str,
        spec: TaskSpec,
        spec_hash: str | None = None,
        trace: Mapping[str, str] | None = None,
        key_id: str | None = None,
    ) -> ForkResult:
        src = self._runs.get(rid)
        if src is None or src.run.tenant != tenant:
            return ForkResult(ForkOutcome.MISSING)
        sxs = self._sx(rid)
        keys = [k for _, k in sxs.order]
        if step_key not in keys:
            return ForkResult(ForkOutcome.NO_STEP)
        k = keys.index(step_key)  # 0-based: steps 0..k are taken over
        now = time.time()
        d = self._new_run(spec, tenant, spec_hash or hash_spec(spec), now, key_id)
        d.trace = dict(trace) if trace else None
        self._set(d, forked_from=rid, fork_step=step_key)
        sx = self._sx(d.run.id)
        self._emit(d, "run.queued", {"kind": spec.kind, "forked_from": rid, "step_key": step_key}, now)
        events = [e for e in src.events if e.id <= sxs.order[k][0]]
        e = 0
        for idx in range(k + 1):
            seq, key = sxs.order[idx]
            while e < len(events) and events[e].id <= seq:
                ev = events[e]
                if ev.type not in LIFECYCLE_EVENTS:
                    data = {"replayed": {"run": rid, "event": ev.id}, **ev.data}
                    new_id = d.run.last_event_id + 1
                    d.events.append(Event(id=new_id, run_id=d.run.id, type=ev.type, ts=ev.ts, data=data))
                    self._set(d, last_event_id=new_id)
                e += 1
            d.steps[key] = src.steps[key]
            sx.order.append((d.run.last_event_id, key))
        files = dict(src.files)
        for tag, path, prev in reversed(sxs.undo):
            if tag <= k:
                break
            if prev is None:
                files.pop(path, None)
            else:
                files[path] = prev
        d.files = files
        sx.undo = [u for u in sxs.undo if u[0] <= k]
        self._enqueue(d)
        await self._notify()
        return ForkResult(ForkOutcome.FORKED, d.run)

    # -- threads ----------------------------------------------------------------------------------
    def _new_thread(self, tenant: str, tid: str, multitask: MultitaskPolicy, metadata: Mapping[str, str]) -> _Thread:
        t = _Thread(
            Thread(id=tid, tenant=tenant, created_at=_dt(time.time()), multitask=multitask, metadata=dict(metadata))
        )
        self._threads[(tenant, tid)] = t
        return t

    def _thread_record(self, t: _Thread) -> Thread:
        return t.record.model_copy(
            update={"runs": len(t.runs), "pending_runs": list(t.pending), "last_run": t.runs[-1] if t.runs else None}
        )

    async def create_thread(
        self,
        tenant: str,
        *,
        thread_id: str,
        multitask: MultitaskPolicy = MultitaskPolicy.REJECT,
        metadata: Mapping[str, str] | None = None,
    ) -> ThreadResult:
        t = self._threads.get((tenant, thread_id))
        if t is not None:
            return ThreadResult(self._thread_record(t), False)
        return ThreadResult(self._thread_record(self._new_thread(tenant, thread_id, multitask, metadata or {})), True)

    async def get_thread(self, thread_id: str, *, tenant: str) -> Thread | None:
        t = self._threads.get((tenant, thread_id))
        return self._thread_record(t) if t is not None else None

    async def list_threads(self, tenant: str, *, limit: int = 50, cursor: str | None = None) -> ThreadPage:
        rows = [self._thread_record(t) for (ten, _), t in self._threads.items() if ten == tenant]
        rows.sort(key=lambda t: (int(t.created_at.timestamp() * 1000), t.id), reverse=True)
        if cursor:
            ms_s, _, after = cursor.partition(":")
            rows = [t for t in rows if (int(t.created_at.timestamp() * 1000), t.id) < (int(float(ms_s)), after)]
        page, more = rows[:limit], len(rows) > limit
        nxt = f"{int(page[-1].created_at.timestamp() * 1000)}:{page[-1].id}" if more and page else None
        return ThreadPage(threads=page, next_cursor=nxt)

    async def thread_runs(self, thread_id: str, *, tenant: str) -> list[str]:
        t = self._threads.get((tenant, thread_id))
        return list(t.runs) if t is not None else []

    async def post_message(
        self,
        spec: TaskSpec,
        *,
        tenant: str,
        multitask: MultitaskPolicy | None = None,
        spec_hash: str | None = None,
        trace: Mapping[str, str] | None = None,
        key_id: str | None = None,
    ) -> MessageResult:
        tid = spec.thread_id
        if not tid:
            raise ValueError("post_message needs a spec with a thread_id")
        h = spec_hash or hash_spec(spec)
        t = self._threads.get((tenant, tid)) or self._new_thread(tenant, tid, MultitaskPolicy.REJECT, {})
        if spec.idempotency_key:
            existing = self._idem.get((tenant, spec.idempotency_key))
            if existing is not None:
                prior = self._runs[existing]
                return MessageResult(
                    MessageOutcome.EXISTING, self._thread_record(t), prior.run, spec_hash=prior.spec_hash
                )
        policy = multitask or t.record.multitask
        active_id = t.record.active_run
        active = self._runs.get(active_id) if active_id else None
        if active is not None and active.run.status.terminal:
            active = None
        if active is not None and policy is MultitaskPolicy.REJECT:
            return MessageResult(MessageOutcome.REJECTED, self._thread_record(t), active=active.run.id)
        now = time.time()
        d = self._new_run(spec, tenant, h, now, key_id)
        d.trace = dict(trace) if trace else None
        if spec.idempotency_key:
            self._idem[(tenant, spec.idempotency_key)] = d.run.id
        t.runs.append(d.run.id)
        sx = self._sx(d.run.id)
        sx.thread, sx.thread_seq = tid, len(t.runs)
        self._emit(d, "run.queued", {"kind": spec.kind, "thread_id": tid}, now)
        text = spec.input_text()
        self._emit(
            d,
            "thread.message",
            {
                "thread_id": tid,
                "position": len(t.runs),
                "multitask": policy.value,
                "active_run": active.run.id if active else None,
                "input": text if len(text) <= 2000 else text[:2000] + "…",
            },
            now,
        )
        outcome = MessageOutcome.STARTED
        if active is not None:
            outcome = self._apply_policy(t, policy, active, d.run.id, now)
        self._start(d)
        await self._notify()
        return MessageResult(
            outcome, self._thread_record(t), d.run, active=active.run.id if active else None, spec_hash=h
        )

    def _apply_policy(self, t: _Thread, policy: MultitaskPolicy, a: _RunData, by: str, now: float) -> MessageOutcome:
        tid = t.record.id
        if policy is MultitaskPolicy.ENQUEUE:
            return MessageOutcome.ENQUEUED
        if policy is MultitaskPolicy.INTERRUPT:
            detail = f"interrupted by a new message on thread {tid} (run {by})"
            if a.run.status is RunStatus.RUNNING:
                self._set(a, pause_requested="interrupt")
                self._emit(a, "run.pause_requested", {"reason": "interrupt", "by_run": by}, now)
            else:
                if a.run.status is RunStatus.WAITING:
                    self._close_approvals(a, now, f"superseded: {detail}")
                self._to_paused(a, "interrupt", detail, now)
            return MessageOutcome.INTERRUPTING
        t.dropped.add(a.run.id)
        if not a.run.cancel_requested:
            self._set(a, cancel_requested=True)
            self._emit(a, "run.cancel_requested", {"reason": "rollback", "by_run": by}, now)
        if a.run.status is RunStatus.RUNNING:
            for q in self._cancel_watchers:
                q.put_nowait(a.run.id)
        else:
            detail = f"rolled back by a new message on thread {tid} (run {by})"
            self._set(
                a,
                status=RunStatus.CANCELLED,
                stop_reason=StopReason.CANCELLED,
                stop_detail=detail,
                finished_at=_dt(now),
            )
            a.owner = None
            self._release_where(a, lambda h: False)
            self._steer_ended(a, now)
            self._emit(a, "run.finished", {"status": "cancelled", "stop_reason": "cancelled", "detail": detail}, now)
        return MessageOutcome.ROLLING_BACK

    async def thread_history(self, rid: str) -> list[Run]:
        d = self._runs.get(rid)
        if d is None:
            return []
        t = self._thread_of(d)
        if t is None:
            return []
        seq = self._sx(rid).thread_seq
        return [self._runs[r].run for r in t.runs[: seq - 1] if r not in t.dropped]
