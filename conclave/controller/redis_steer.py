"""The ``SteerStore`` contract on Redis / Valkey: a mixin of ``RedisRunStore``.

Every change of state is one Lua script (``lua/request_pause``, ``pause``, ``resume``, ``wait``,
``decide``, ``expire``, ``thread_create``, ``thread_message``, ``fork``), with the helpers of
``lua/steer.lua`` that the shared scripts call at their hook points (claim, commit, finish, cancel,
poison). Decisions and timeouts use the server's clock (``TIME``), so workers with skewed clocks agree
on when a call expired. Approval records are hashes whose JSON fields (arguments, schema) Lua never
decodes: a big integer in a tool's arguments reaches the tool exactly as the model wrote it.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from conclave.core.keys import Keys
from conclave.core.store import spec_hash as hash_spec
from conclave.core.store_steer import (
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
from conclave.schema import (
    LIFECYCLE_EVENTS,
    Approval,
    ApprovalStatus,
    Decision,
    MultitaskPolicy,
    Run,
    RunStatus,
    StepInfo,
    TaskSpec,
    Thread,
    ThreadPage,
)

if TYPE_CHECKING:
    from conclave.controller.scripts import Scripts

__all__ = ["RedisSteerMixin", "decided_status"]

#: What each decision records as the approval's status.
_DECIDED: dict[str, ApprovalStatus] = {
    "approve": ApprovalStatus.APPROVED,
    "deny": ApprovalStatus.DENIED,
    "edit": ApprovalStatus.EDITED,
}


def decided_status(decision: Decision) -> ApprovalStatus:
    return _DECIDED[decision]


def _dt(v: str | None) -> datetime | None:
    return datetime.fromtimestamp(float(v), UTC) if v else None


def _run_id() -> str:
    return f"run_{int(time.time() * 1000):011x}{secrets.token_hex(6)}"


def _preview(spec: TaskSpec) -> str:
    text = spec.input_text()
    return text if len(text) <= 2000 else text[:2000] + "…"


#: The fields of an approval record (``<approval id>|<field>`` in the run's approval hash).
_APPROVAL_FIELDS = (
    "id",
    "run_id",
    "tool",
    "kind",
    "arguments",
    "step_key",
    "requested_at",
    "reserve",
    "status",
    "reason",
    "edited_arguments",
    "answer",
    "decided_at",
    "expires_at",
    "on_timeout",
    "parameters",
)


def to_approval(d: Mapping[str, str]) -> Approval:
    """An approval hash as the record the API shows."""
    return Approval(
        id=d["id"],
        run_id=d["run_id"],
        tool=d["tool"],
        kind=d.get("kind", "tool"),  # type: ignore[arg-type]
        arguments=json.loads(d.get("arguments") or "{}"),
        step_key=d["step_key"],
        requested_at=_dt(d.get("requested_at")) or datetime.now(UTC),
        reserve={k: int(v) for k, v in json.loads(d.get("reserve") or "{}").items()},
        status=ApprovalStatus(d.get("status", "pending")),
        reason=d.get("reason") or None,
        edited_arguments=json.loads(d["edited_arguments"]) if d.get("edited_arguments") else None,
        answer=d.get("answer") or None,
        decided_at=_dt(d.get("decided_at")),
        expires_at=_dt(d.get("expires_at")),
        on_timeout=d.get("on_timeout", "deny"),  # type: ignore[arg-type]
        parameters=json.loads(d.get("parameters") or "{}"),
    )


class RedisSteerMixin:
    """Needs ``redis`` (decoded), ``keys``, ``prefix`` and ``scripts`` from ``RedisRunStore``."""

    redis: Any
    keys: Keys
    prefix: str
    scripts: Scripts

    if TYPE_CHECKING:

        async def get(self, rid: str, *, tenant: str | None = None) -> Run | None: ...

        async def get_many(self, rids: Sequence[str]) -> list[Run]: ...

    # -- pause and resume -------------------------------------------------------------------------
    async def request_pause(self, rid: str, *, tenant: str, reason: PauseReason = "user") -> PauseResult:
        res = await self.scripts.request_pause(args=[self.prefix, rid, tenant, reason])
        outcome = PauseOutcome(res[0])
        return PauseResult(outcome, RunStatus(res[1]) if outcome is PauseOutcome.TERMINAL else None)

    async def pause(
        self, rid: str, owner: str, *, reason: PauseReason, detail: str | None = None, output: str | None = None
    ) -> bool:
        res = await self.scripts.pause(args=[self.prefix, rid, owner, reason, detail or "", output or ""])
        return int(res) == 1

    async def resume(self, rid: str, *, tenant: str) -> ResumeResult:
        res = await self.scripts.resume(args=[self.prefix, rid, tenant])
        outcome = ResumeOutcome(res[0])
        status = RunStatus(res[1]) if outcome is ResumeOutcome.NOT_PAUSED else None
        return ResumeResult(outcome, status)

    async def paused_runs(self, tenant: str, *, reason: PauseReason | None = None) -> list[str]:
        rids: list[str] = await self.redis.zrange(self.keys.runs(tenant, status=RunStatus.PAUSED.value), 0, -1)
        if reason is None or not rids:
            return rids
        async with self.redis.pipeline(transaction=False) as pipe:
            for rid in rids:
                pipe.hget(self.keys.run(rid), "pause_reason")
            reasons = await pipe.execute()
        return [rid for rid, r in zip(rids, reasons, strict=True) if r == reason]

    # -- approvals --------------------------------------------------------------------------------
    async def wait_for_approval(
        self, rid: str, owner: str, requests: Sequence[ApprovalRequest], *, output: str | None = None
    ) -> bool:
        if not requests:
            raise ValueError("wait_for_approval needs at least one request")
        args: list[Any] = [self.prefix, rid, owner, output or "", len(requests)]
        for r in requests:
            event: dict[str, Any] = {
                "approval_id": r.id,
                "tool": r.tool,
                "kind": r.kind,
                "arguments": dict(r.arguments),
                "step_key": r.step_key,
                "reserve": dict(r.reserve),
            }
            if r.timeout_s is not None:
                event["timeout_s"] = r.timeout_s
                event["on_timeout"] = r.on_timeout
            args += [
                r.id,
                r.tool,
                r.kind,
                json.dumps(dict(r.arguments)),
                r.step_key,
                json.dumps({k: str(int(v)) for k, v in r.reserve.items()}),
                json.dumps(dict(r.parameters)),
                "" if r.timeout_s is None else repr(float(r.timeout_s)),
                r.on_timeout,
                json.dumps(event, default=str),
            ]
        return int(await self.scripts.wait(args=args)) == 1

    async def _approvals_by_member(self, members: Sequence[str]) -> list[Approval]:
        """Approvals by ``<rid>|<approval id>``, in that order (ones whose run was purged are left out)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for m in members:
                rid, _, aid = m.partition("|")
                pipe.hmget(self.keys.run_approvals(rid), [f"{aid}|{f}" for f in _APPROVAL_FIELDS])
            rows = await pipe.execute()
        out = []
        for row in rows:
            d = {f: v for f, v in zip(_APPROVAL_FIELDS, row, strict=True) if v is not None}
            if d.get("id"):
                out.append(to_approval(d))
        return out

    async def _approval(self, rid: str, aid: str) -> Approval | None:
        got = await self._approvals_by_member([f"{rid}|{aid}"])
        return got[0] if got else None

    async def approvals(self, rid: str) -> list[Approval]:
        ids: list[str] = await self.redis.lrange(self.keys.run_approval_order(rid), 0, -1)
        return await self._approvals_by_member([f"{rid}|{aid}" for aid in ids])

    async def list_approvals(
        self, tenant: str, *, status: ApprovalStatus | None = None, limit: int = 100
    ) -> list[Approval]:
        pending = status is ApprovalStatus.PENDING
        key = self.keys.tenant_approvals(tenant, pending=pending)
        out: list[Approval] = []
        offset = 0
        while len(out) < limit:
            batch: list[str] = await self.redis.zrevrange(key, offset, offset + max(limit, 50) - 1)
            if not batch:
                break
            offset += len(batch)
            for a in await self._approvals_by_member(batch):
                if status is None or a.status is status:
                    out.append(a)
        return out[:limit]

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
        status = decided_status(decision)
        event: dict[str, Any] = {"approval_id": approval_id, "status": status.value, "decision": decision}
        if reason:
            event["reason"] = reason
        if arguments is not None:
            event["edited_arguments"] = dict(arguments)
        if answer:
            event["answer"] = answer[:4000]
        res = await self.scripts.decide(
            args=[
                self.prefix,
                rid,
                approval_id,
                tenant,
                status.value,
                reason or "",
                json.dumps(dict(arguments)) if arguments is not None else "",
                answer or "",
                json.dumps(event, default=str),
            ]
        )
        outcome = DecideOutcome(res[0])
        if outcome is DecideOutcome.MISSING:
            return DecideResult(outcome)
        approval = await self._approval(rid, approval_id)
        run_status = await self.redis.hget(self.keys.run(rid), "status")
        return DecideResult(
            outcome,
            approval=approval,
            status=RunStatus(run_status) if run_status else None,
            resumed=outcome is DecideOutcome.DECIDED and int(res[1]) == 1,
        )

    async def expire_approvals(self, *, limit: int = 100) -> int:
        return int(await self.scripts.expire(args=[self.prefix, limit]))

    # -- steps and forks --------------------------------------------------------------------------
    async def step_log(self, rid: str) -> list[StepInfo]:
        rows: list[str] = await self.redis.lrange(self.keys.step_order(rid), 0, -1)
        out = []
        for i, row in enumerate(rows):
            seq, _, key = row.partition("|")
            out.append(StepInfo(key=key, index=i, event_id=int(seq)))
        return out

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
        new = _run_id()
        queued = {"kind": spec.kind, "forked_from": rid, "step_key": step_key}
        res = await self.scripts.fork(
            args=[
                self.prefix,
                new,
                tenant,
                rid,
                step_key,
                spec.model_dump_json(exclude_none=True),
                spec_hash or hash_spec(spec),
                f"{time.time():.6f}",
                spec.kind,
                json.dumps(queued),
                json.dumps(dict(trace)) if trace else "",
                json.dumps(sorted(LIFECYCLE_EVENTS)),
                key_id or "",
            ]
        )
        outcome = ForkOutcome(res[0])
        if outcome is not ForkOutcome.FORKED:
            return ForkResult(outcome)
        return ForkResult(outcome, await self.get(new))

    # -- threads ----------------------------------------------------------------------------------
    async def create_thread(
        self,
        tenant: str,
        *,
        thread_id: str,
        multitask: MultitaskPolicy = MultitaskPolicy.REJECT,
        metadata: Mapping[str, str] | None = None,
    ) -> ThreadResult:
        created = await self.scripts.thread_create(
            args=[
                self.prefix,
                tenant,
                thread_id,
                multitask.value,
                json.dumps(dict(metadata or {})),
                f"{time.time():.6f}",
            ]
        )
        thread = await self.get_thread(thread_id, tenant=tenant)
        if thread is None:  # pragma: no cover - the script just wrote it
            raise RuntimeError(f"thread {thread_id} vanished right after it was created")
        return ThreadResult(thread, bool(int(created)))

    async def get_thread(self, thread_id: str, *, tenant: str) -> Thread | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.thread(tenant, thread_id))
            pipe.lrange(self.keys.thread_pending(tenant, thread_id), 0, -1)
            d, pending = await pipe.execute()
        if not d:
            return None
        return Thread(
            id=d["id"],
            tenant=d["tenant"],
            created_at=_dt(d.get("created_at")) or datetime.now(UTC),
            multitask=MultitaskPolicy(d.get("multitask") or "reject"),
            metadata=json.loads(d.get("metadata") or "{}"),
            runs=int(d.get("n") or 0),
            active_run=d.get("active") or None,
            pending_runs=list(pending),
            last_run=d.get("last") or None,
        )

    async def list_threads(self, tenant: str, *, limit: int = 50, cursor: str | None = None) -> ThreadPage:
        key = self.keys.threads(tenant)
        top: str | float = "+inf"
        after: str | None = None
        if cursor:
            ms, _, after = cursor.partition(":")
            top = float(ms)
        rows = await self.redis.zrevrangebyscore(key, top, "-inf", start=0, num=limit + 50, withscores=True)
        keep = [(t, s) for t, s in rows if not (after is not None and s == top and t >= after)]
        threads = []
        for tid, score in keep[: limit + 1]:
            thread = await self.get_thread(tid, tenant=tenant)
            if thread is not None:
                threads.append((thread, score))
        page, more = threads[:limit], len(threads) > limit
        nxt = f"{int(page[-1][1])}:{page[-1][0].id}" if more and page else None
        return ThreadPage(threads=[t for t, _ in page], next_cursor=nxt)

    async def thread_runs(self, thread_id: str, *, tenant: str) -> list[str]:
        rids: list[str] = await self.redis.zrange(self.keys.thread_runs(tenant, thread_id), 0, -1)
        return rids

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
        if not spec.thread_id:
            raise ValueError("post_message needs a spec with a thread_id")
        h = spec_hash or hash_spec(spec)
        res = await self.scripts.thread_message(
            args=[
                self.prefix,
                _run_id(),
                tenant,
                spec.model_dump_json(exclude_none=True),
                h,
                f"{time.time():.6f}",
                spec.idempotency_key or "",
                json.dumps({"kind": spec.kind, "thread_id": spec.thread_id}),
                json.dumps(dict(trace)) if trace else "",
                spec.kind,
                spec.thread_id,
                multitask.value if multitask else "",
                _preview(spec),
                key_id or "",
            ]
        )
        outcome = MessageOutcome(res[0])
        thread = await self.get_thread(spec.thread_id, tenant=tenant)
        if thread is None:  # pragma: no cover - the script just wrote it
            raise RuntimeError(f"thread {spec.thread_id} vanished")
        run = await self.get(res[1]) if res[1] else None
        return MessageResult(outcome, thread, run, active=res[2] or None, spec_hash=res[3] or h)

    async def thread_history(self, rid: str) -> list[Run]:
        tid, tenant, seq = await self.redis.hmget(self.keys.run(rid), "thread", "tenant", "thread_seq")
        if not tid or not seq:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(self.keys.thread_runs(tenant, tid), "-inf", f"({seq}")
            pipe.smembers(self.keys.thread_dropped(tenant, tid))
            earlier, dropped = await pipe.execute()
        return await self.get_many([r for r in earlier if r not in dropped])
