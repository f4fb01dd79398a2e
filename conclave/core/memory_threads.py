"""Threads in the in-memory ``SteerStore`` (a test double): runs of a thread start one at a time and a
message under an active run follows the thread's multitask policy, as ``lua/thread_create.lua`` and ``lua/thread_message.lua`` do."""

from __future__ import annotations

import time
from collections.abc import Mapping

from conclave.schema import (
    MultitaskPolicy,
    Run,
    RunStatus,
    StopReason,
    TaskSpec,
    Thread,
    ThreadPage,
)

from .memory_steer_base import InMemorySteerBase, _dt, _RunData, _Thread
from .store import spec_hash as hash_spec
from .store_steer import (
    MessageOutcome,
    MessageResult,
    ThreadResult,
)

__all__ = ["InMemoryThreadsMixin"]


class InMemoryThreadsMixin(InMemorySteerBase):
    """Threads, their messages and their runs' shared history."""

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
