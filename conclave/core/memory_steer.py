"""The ``SteerStore`` contract in memory: a mixin of ``InMemoryRunStore`` (a test double, like it).

It keeps the same promises as the Redis scripts — the first decision wins, waiting and paused runs hold
nothing, a stale queue entry is acknowledged, threads start their runs one at a time, a fork rebuilds the
workspace as it was after its step — so the orchestration above can be unit-tested without a server. The
shared methods of ``InMemoryRunStore`` call the ``_steer_*`` hooks where the Lua scripts call
``lua/steer.lua``'s.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from conclave.schema import (
    LIFECYCLE_EVENTS,
    Event,
    RunStatus,
    StepInfo,
    TaskSpec,
)

from .memory_approvals import InMemoryApprovalsMixin
from .memory_threads import InMemoryThreadsMixin
from .store import spec_hash as hash_spec
from .store_steer import (
    ForkOutcome,
    ForkResult,
    PauseOutcome,
    PauseReason,
    PauseResult,
    ResumeOutcome,
    ResumeResult,
)

__all__ = ["InMemorySteerMixin"]


class InMemorySteerMixin(InMemoryApprovalsMixin, InMemoryThreadsMixin):
    """Pause, resume and forks; approvals and threads come from the bases."""

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
