"""The run store: run records, the durable queue, checkpoints and event streams in Redis.

Only core data types are used (hashes, sorted sets, streams, pub/sub, Lua), so Redis 6+, Redis 7 and
Valkey all work. Every state change that must be atomic is one Lua script (see ``lua/``); every
script is safe to retry after a dropped connection.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from conclave.controller.scripts import Scripts
from conclave.schema import Cost, Event, Run, RunPage, RunStatus, StopReason, TaskSpec, Usage

__all__ = ["ClaimResult", "LeaseLost", "QueueEntry", "RunStore", "WorkspaceOp", "new_run_id"]

log = logging.getLogger(__name__)

GROUP = "workers"


class LeaseLost(RuntimeError):
    """Another worker owns the run now; this worker must stop touching it."""


def new_run_id() -> str:
    """Time-ordered, unguessable run ids."""
    return f"run_{int(time.time() * 1000):011x}{secrets.token_hex(6)}"


def spec_hash(spec: TaskSpec) -> str:
    body = spec.model_dump_json(exclude={"idempotency_key"}, exclude_defaults=True)
    return hashlib.sha256(body.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class QueueEntry:
    qid: str
    rid: str


@dataclass
class ClaimResult:
    outcome: str  # "ok" | "terminal" | "dead" | "missing"
    attempt: int = 0
    status: str | None = None


@dataclass
class WorkspaceOp:
    op: str  # "w" write, "d" delete
    path: str
    content: bytes = b""


@dataclass
class PendingCommit:
    """What one step commits, gathered while the step runs."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    workspace: dict[str, WorkspaceOp] = field(default_factory=dict)
    ledger: list[dict[str, Any]] = field(default_factory=list)


def _ts(v: str | None) -> datetime | None:
    return datetime.fromtimestamp(float(v), UTC) if v else None


class RunStore:
    """All Redis access of the controller. ``prefix`` namespaces every key (several deployments or
    test sessions can share one server)."""

    def __init__(self, redis: Redis, prefix: str = "cv", *, binary: Redis | None = None) -> None:
        # redis-py types async results as ``Awaitable[T] | T`` unions; typed as Any at this boundary.
        self.r: Any = redis
        self.rb: Any = binary or redis
        self.p = prefix
        self.scripts = Scripts(redis)

    # -- keys ------------------------------------------------------------------------------------
    def run_key(self, rid: str) -> str:
        return f"{self.p}:run:{rid}"

    @property
    def queue_key(self) -> str:
        return f"{self.p}:queue"

    @property
    def dead_key(self) -> str:
        return f"{self.p}:dead"

    @property
    def cancel_channel(self) -> str:
        return f"{self.p}:cancel"

    # -- submission and reading ------------------------------------------------------------------
    async def ensure_group(self) -> None:
        try:
            await self.r.xgroup_create(self.queue_key, GROUP, id="0", mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    async def submit(
        self, spec: TaskSpec, *, tenant: str = "default", trace: dict[str, str] | None = None
    ) -> tuple[Run, bool, str]:
        """Create and enqueue a run. With an idempotency key, a second submission returns the first
        run (``created`` False); the returned hash lets the caller detect a different spec."""
        rid = new_run_id()
        h = spec_hash(spec)
        now = f"{time.time():.6f}"
        created, got_rid, got_hash = await self.scripts.submit(
            args=[
                self.p,
                rid,
                tenant,
                spec.model_dump_json(exclude_none=True),
                h,
                now,
                spec.idempotency_key or "",
                json.dumps({"kind": spec.kind}),
                json.dumps(trace) if trace else "",
            ]
        )
        run = await self.get(got_rid)
        assert run is not None
        return run, bool(int(created)), got_hash if not int(created) else h

    async def durable(self) -> None:
        """Wait until what this client wrote is on disk in the append-only file, where the server
        supports it (Redis >= 7.2, Valkey). A submission is acknowledged only after this."""
        try:
            await self.r.execute_command("WAITAOF", 1, 0, 1000)
        except ResponseError as e:
            msg = str(e).lower()
            if "unknown command" in msg or "appendonly" in msg or "disabled" in msg:
                return
            raise

    async def get(self, rid: str, *, tenant: str | None = None) -> Run | None:
        data = await self.r.hgetall(self.run_key(rid))
        if not data or (tenant is not None and data.get("tenant") != tenant):
            return None
        return self._to_run(data)

    async def get_many(self, rids: Sequence[str]) -> list[Run]:
        async with self.r.pipeline(transaction=False) as pipe:
            for rid in rids:
                pipe.hgetall(self.run_key(rid))
            rows = await pipe.execute()
        return [self._to_run(d) for d in rows if d]

    @staticmethod
    def _to_run(d: dict[str, str]) -> Run:
        return Run(
            id=d["id"],
            tenant=d.get("tenant", "default"),
            spec=TaskSpec.model_validate_json(d["spec"]),
            status=RunStatus(d["status"]),
            stop_reason=StopReason(d["stop_reason"]) if d.get("stop_reason") else None,
            stop_detail=d.get("stop_detail") or None,
            created_at=_ts(d.get("created_at")) or datetime.now(UTC),
            started_at=_ts(d.get("started_at")),
            finished_at=_ts(d.get("finished_at")),
            attempts=int(d.get("attempts", 0)),
            output=d.get("output"),
            result=json.loads(d["result"]) if d.get("result") else None,
            error=d.get("error") or None,
            usage=Usage.model_validate_json(d["usage"]) if d.get("usage") else Usage(),
            cost_usd=float(d.get("cost_usd", 0) or 0),
            cost=Cost.model_validate_json(d["cost"]) if d.get("cost") else None,
            exhausted_limit=d.get("exhausted_limit") or None,
            last_event_id=int(d.get("seq", 0)),
            cancel_requested=d.get("cancel") == "1",
        )

    async def list_runs(
        self, *, tenant: str = "default", status: RunStatus | None = None, limit: int = 50, cursor: str | None = None
    ) -> RunPage:
        """Newest first. The cursor is ``<created_ms>:<run id>`` of the last run of the previous page."""
        key = f"{self.p}:runs:{tenant}" + (f":s:{status.value}" if status else "")
        top: str | float = "+inf"
        after_rid: str | None = None
        if cursor:
            ms, _, after_rid = cursor.partition(":")
            top = float(ms)
        out: list[tuple[str, float]] = []
        offset = 0
        while len(out) < limit + 1:
            batch = await self.r.zrevrangebyscore(key, top, "-inf", start=offset, num=limit + 1, withscores=True)
            if not batch:
                break
            offset += len(batch)
            for rid, score in batch:
                if after_rid is not None and score == top and rid >= after_rid:
                    continue
                out.append((rid, score))
        page, more = out[:limit], len(out) > limit
        runs = await self.get_many([rid for rid, _ in page])
        next_cursor = f"{int(page[-1][1])}:{page[-1][0]}" if more and page else None
        return RunPage(runs=runs, next_cursor=next_cursor)

    async def cancel(self, rid: str, *, tenant: str = "default") -> str:
        """Returns ``missing``, ``cancelled`` (it was queued), ``cancelling`` (a worker is told), or
        the terminal status the run already had."""
        res = await self.scripts.cancel(args=[self.p, rid, tenant, f"{time.time():.6f}"])
        return str(res[1] if res[0] == "terminal" else res[0])

    async def events(self, rid: str, *, after: int = 0, count: int = 500, block_ms: int | None = None) -> list[Event]:
        key = f"{self.run_key(rid)}:ev"
        if block_ms is None:
            rows = await self.r.xrange(key, min=f"({after}-0", max="+", count=count)
        else:
            res = await self.r.xread({key: f"{after}-0"}, count=count, block=block_ms)
            rows = res[0][1] if res else []
        return [
            Event(
                id=int(eid.split("-", 1)[0]),
                run_id=rid,
                type=f["type"],
                ts=float(f["ts"]),
                data=json.loads(f["data"]),
            )
            for eid, f in rows
        ]

    # -- the worker side -------------------------------------------------------------------------
    async def read_new(self, consumer: str, count: int, block_ms: int) -> list[QueueEntry]:
        res = await self.r.xreadgroup(GROUP, consumer, {self.queue_key: ">"}, count=count, block=block_ms)
        if not res:
            return []
        return [QueueEntry(qid, f.get("rid", "")) for qid, f in res[0][1]]

    async def reclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[QueueEntry]:
        """Take over entries whose worker stopped renewing its lease (XAUTOCLAIM)."""
        res = await self.r.xautoclaim(self.queue_key, GROUP, consumer, min_idle_ms, "0-0", count=count)
        entries = res[1] if len(res) > 1 else []
        return [QueueEntry(qid, f.get("rid", "")) for qid, f in entries if f]

    async def claim(self, rid: str, *, owner: str, qid: str, worker: str, max_attempts: int) -> ClaimResult:
        res = await self.scripts.claim(args=[self.p, rid, owner, f"{time.time():.6f}", max_attempts, qid, worker])
        kind = res[0]
        if kind == "ok":
            return ClaimResult("ok", attempt=int(res[1]))
        if kind == "terminal":
            return ClaimResult("terminal", status=res[1])
        if kind == "dead":
            return ClaimResult("dead", attempt=int(res[1]))
        return ClaimResult("missing")

    async def trace_context(self, rid: str) -> dict[str, str] | None:
        """The W3C trace context of the request that submitted the run."""
        raw = await self.r.hget(self.run_key(rid), "trace")
        return json.loads(raw) if raw else None

    async def load_steps(self, rid: str) -> dict[str, str]:
        return await self.r.hgetall(f"{self.run_key(rid)}:steps")

    async def commit(
        self, rid: str, owner: str, step_key: str, step_value: str, pending: PendingCommit
    ) -> tuple[int, bool]:
        """Commit a step; returns (last event id, cancel requested). Raises ``LeaseLost``."""
        args: list[Any] = [self.p, rid, owner, f"{time.time():.6f}", step_key, step_value, len(pending.events)]
        for etype, data in pending.events:
            args += [etype, json.dumps(data, default=str)]
        args.append(len(pending.workspace))
        for op in pending.workspace.values():
            args += [op.op, op.path, op.content]
        args.append(len(pending.ledger))
        args += [json.dumps(op) for op in pending.ledger]
        res = await self.scripts.commit(args=args)
        if int(res[0]) == -1:
            raise LeaseLost(rid)
        return int(res[0]), bool(int(res[1]))

    async def finish(
        self, rid: str, owner: str, status: RunStatus, fields: dict[str, Any], event: dict[str, Any]
    ) -> bool:
        res = await self.scripts.finish(
            args=[
                self.p,
                rid,
                owner,
                f"{time.time():.6f}",
                status.value,
                json.dumps(fields, default=str),
                json.dumps(event, default=str),
            ]
        )
        return int(res) == 1

    async def renew(self, consumer: str, leases: Sequence[tuple[str, str, str]]) -> list[str]:
        """Renew (rid, owner, qid) leases; returns the rids this worker no longer owns."""
        if not leases:
            return []
        args: list[Any] = [self.p, consumer]
        for rid, owner, qid in leases:
            args += [rid, owner, qid]
        lost = await self.scripts.renew(args=args)
        return list(lost or [])

    async def queue_depth(self) -> dict[str, int]:
        """Entries waiting for a worker, and entries held by workers."""
        try:
            groups = await self.r.xinfo_groups(self.queue_key)
        except ResponseError:
            return {"waiting": 0, "in_flight": 0}
        for g in groups:
            if g["name"] == GROUP:
                return {"waiting": int(g.get("lag") or 0), "in_flight": int(g.get("pending") or 0)}
        return {"waiting": 0, "in_flight": 0}

    async def dead_letters(self, count: int = 100) -> list[dict[str, str]]:
        rows = await self.r.xrevrange(self.dead_key, count=count)
        return [dict(f, id=eid) for eid, f in rows]
