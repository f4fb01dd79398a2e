"""Approvals in the in-memory ``SteerStore`` (a test double): a run waits holding nothing, the first
decision wins, a timed-out request is decided by its policy — the promises of ``lua/wait.lua``, ``lua/decide.lua`` and ``lua/expire.lua``."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from conclave.schema import (
    Approval,
    ApprovalStatus,
    Decision,
    RunStatus,
    StopReason,
)

from .memory_steer_base import _DECIDED, InMemorySteerBase, _dt
from .store_steer import (
    ApprovalRequest,
    DecideOutcome,
    DecideResult,
)

__all__ = ["InMemoryApprovalsMixin"]


class InMemoryApprovalsMixin(InMemorySteerBase):
    """Pending tool calls and their decisions."""

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
