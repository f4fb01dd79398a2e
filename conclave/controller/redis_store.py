"""``RedisRunStore``: the ``RunStore`` contract on Redis 7 / Valkey, the store users run.

Only core data types are used (hashes, sorted sets, streams, pub/sub, Lua), so Redis 6+, Redis 7 and
Valkey all work. Every state change that must be atomic is one Lua script (``lua/``, loaded by
``scripts.py``); every script is safe to retry after a dropped connection. The key layout is
``conclave.core.keys``.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from conclave.controller.redis_commits import GroupCommit
from conclave.controller.redis_outbox import RedisOutboxMixin
from conclave.controller.redis_retention import RedisRetention
from conclave.controller.redis_schedules import RedisSchedulesMixin
from conclave.controller.redis_steer import RedisSteerMixin
from conclave.controller.redis_tenants import RedisTenants
from conclave.controller.scripts import Scripts
from conclave.core.ids import unique_id
from conclave.core.keys import GROUP, Keys
from conclave.core.pending import PendingCommit
from conclave.core.store import (
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
from conclave.core.store import spec_hash as hash_spec
from conclave.core.wire import event_json
from conclave.schema import ApiKey, Cost, Event, Run, RunPage, RunStatus, StopReason, TaskSpec, Usage

__all__ = ["RedisRunStore", "new_run_id"]

log = logging.getLogger(__name__)


def new_run_id() -> str:
    """Time-ordered, unguessable run ids."""
    return f"run_{int(time.time() * 1000):011x}{secrets.token_hex(6)}"


def _ts(v: str | None) -> datetime | None:
    return datetime.fromtimestamp(float(v), UTC) if v else None


def _now() -> str:
    return f"{time.time():.6f}"


class RedisRunStore(RedisSteerMixin, RedisTenants, RedisRetention, RedisOutboxMixin, RedisSchedulesMixin):
    """All Redis access of Conclave. ``redis`` decodes responses (text); ``binary`` does not (workspace
    files are bytes). ``prefix`` namespaces every key. The steering operations (pause, approvals,
    threads, forks) are ``RedisSteerMixin``'s."""

    def __init__(self, redis: Redis, prefix: str = "cv", *, binary: Redis | None = None) -> None:
        # redis-py types async results as ``Awaitable[T] | T`` unions; typed as Any at this boundary.
        self.redis: Any = redis
        self.binary: Any = binary or redis
        self.keys = Keys(prefix)
        self.prefix = prefix
        self.scripts = Scripts(redis)
        self.commits = GroupCommit(redis, self.scripts.commit)

    async def close(self) -> None:
        await self.redis.aclose()
        if self.binary is not self.redis:
            await self.binary.aclose()

    # -- submission and reading ------------------------------------------------------------------
    async def ready(self) -> None:
        try:
            await self.redis.xgroup_create(self.keys.queue, GROUP, id="0", mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

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
        rid = new_run_id()
        created, got_rid, got_hash = await self.scripts.submit(
            args=[
                self.prefix,
                rid,
                tenant,
                spec.model_dump_json(exclude_none=True),
                spec_hash,
                _now(),
                spec.idempotency_key or "",
                json.dumps({"kind": spec.kind}),
                json.dumps(dict(trace)) if trace else "",
                spec.kind,
                key_id or "",
            ]
        )
        run = await self.get(got_rid)
        if run is None:  # pragma: no cover - the script just wrote it
            raise RuntimeError(f"run {got_rid} vanished right after submission")
        created_b = bool(int(created))
        return SubmitResult(run=run, created=created_b, spec_hash=spec_hash if created_b else got_hash)

    async def durable(self) -> None:
        """Wait until what this client wrote is in the append-only file, where the server supports it
        (Redis >= 7.2, Valkey)."""
        try:
            await self.redis.execute_command("WAITAOF", 1, 0, 1000)
        except ResponseError as e:
            msg = str(e).lower()
            if "unknown command" in msg or "appendonly" in msg or "disabled" in msg:
                return
            raise

    async def get(self, rid: str, *, tenant: str | None = None) -> Run | None:
        data = await self.redis.hgetall(self.keys.run(rid))
        if not data or (tenant is not None and data.get("tenant") != tenant):
            return None
        return self._to_run(data)

    async def tenants(self) -> list[str]:
        return sorted(await self.redis.smembers(f"{self.prefix}:tenants"))

    async def get_many(self, rids: Sequence[str]) -> list[Run]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for rid in rids:
                pipe.hgetall(self.keys.run(rid))
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
            pause_requested=d.get("pause") or None,
            pause_reason=d.get("pause_reason") or None,
            forked_from=d.get("fork_of") or None,
            key_id=d.get("key") or None,
            fork_step=d.get("fork_step") or None,
            idle_seconds=float(d.get("idle_s") or 0),
        )

    async def list_runs(
        self,
        *,
        tenant: str,
        status: RunStatus | None = None,
        kind: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        """Newest first. The cursor is ``<created_ms>:<run id>`` of the last run of the previous page.
        Both filters: the smaller index is walked and the other checked on the records."""
        key = self.keys.runs(tenant, status=status.value if status else None, kind=None if status else kind)
        top: str | float = "+inf"
        after_rid: str | None = None
        if cursor:
            ms, _, after_rid = cursor.partition(":")
            top = float(ms)
        out: list[tuple[Run, float]] = []
        offset = 0
        while len(out) < limit + 1:
            batch = await self.redis.zrevrangebyscore(key, top, "-inf", start=offset, num=limit + 1, withscores=True)
            if not batch:
                break
            offset += len(batch)
            keep = [
                (rid, score)
                for rid, score in batch
                if not (after_rid is not None and score == top and rid >= after_rid)
            ]
            runs = {r.id: r for r in await self.get_many([rid for rid, _ in keep])}
            for rid, score in keep:
                run = runs.get(rid)
                if run is None or (kind is not None and run.spec.kind != kind):
                    continue
                out.append((run, score))
        page, more = out[:limit], len(out) > limit
        next_cursor = f"{int(page[-1][1])}:{page[-1][0].id}" if more and page else None
        return RunPage(runs=[r for r, _ in page], next_cursor=next_cursor)

    async def cancel(self, rid: str, *, tenant: str) -> CancelResult:
        res = await self.scripts.cancel(args=[self.prefix, rid, tenant, _now()])
        outcome = CancelOutcome(res[0])
        return CancelResult(outcome, RunStatus(res[1]) if outcome is CancelOutcome.TERMINAL else None)

    async def cancels(self) -> AsyncIterator[str]:
        pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(self.keys.cancel_channel)
            while True:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if msg and msg.get("type") == "message":
                    yield str(msg["data"])
        finally:
            try:
                await pubsub.aclose()
            except Exception:  # noqa: BLE001 - closing a pub/sub on a dead connection
                log.debug("closing the cancel subscription failed", exc_info=True)

    async def events(self, rid: str, *, after: int = 0, count: int = 500, block_ms: int | None = None) -> list[Event]:
        key = self.keys.events(rid)
        if block_ms is None:
            rows = await self.redis.xrange(key, min=f"({after}-0", max="+", count=count)
        else:
            res = await self.redis.xread({key: f"{after}-0"}, count=count, block=block_ms)
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

    async def trace_context(self, rid: str) -> dict[str, str] | None:
        raw = await self.redis.hget(self.keys.run(rid), "trace")
        return json.loads(raw) if raw else None

    # -- the worker side -------------------------------------------------------------------------
    async def read_new(self, consumer: str, count: int, block_ms: int) -> list[QueueEntry]:
        res = await self.redis.xreadgroup(GROUP, consumer, {self.keys.queue: ">"}, count=count, block=block_ms)
        if not res:
            return []
        return [QueueEntry(qid, f.get("rid", "")) for qid, f in res[0][1]]

    async def reclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[QueueEntry]:
        """Take over entries whose worker stopped renewing its lease (XAUTOCLAIM)."""
        res = await self.redis.xautoclaim(self.keys.queue, GROUP, consumer, min_idle_ms, "0-0", count=count)
        entries = res[1] if len(res) > 1 else []
        return [QueueEntry(qid, f.get("rid", "")) for qid, f in entries if f is not None]

    async def claim(self, rid: str, *, owner: str, qid: str, worker: str, max_attempts: int) -> ClaimResult:
        res = await self.scripts.claim(args=[self.prefix, rid, owner, _now(), max_attempts, qid, worker])
        outcome = ClaimOutcome(res[0])
        if outcome in (ClaimOutcome.TERMINAL, ClaimOutcome.STALE):
            return ClaimResult(outcome, status=RunStatus(res[1]))
        if outcome is ClaimOutcome.OK:
            return ClaimResult(outcome, attempt=int(res[1]), clock=float(res[2]), started_at=float(res[3]))
        if outcome is ClaimOutcome.DEAD:
            return ClaimResult(outcome, attempt=int(res[1]))
        return ClaimResult(outcome)

    async def poison(self, rid: str, *, owner: str, qid: str, reason: str) -> bool:
        """Fail, dead-letter and acknowledge a claimed run whose record cannot be read."""
        return bool(int(await self.scripts.poison(args=[self.prefix, rid, owner, _now(), qid, reason])))

    async def renew(self, consumer: str, leases: Sequence[tuple[str, str, str]]) -> list[str]:
        if not leases:
            return []
        args: list[Any] = [self.prefix, consumer]
        for rid, owner, qid in leases:
            args += [rid, owner, qid]
        lost = await self.scripts.renew(args=args)
        return list(lost or [])

    async def load_steps(self, rid: str) -> dict[str, str]:
        steps: dict[str, str] = await self.redis.hgetall(self.keys.steps(rid))
        return steps

    async def load_workspace(self, rid: str) -> dict[str, bytes]:
        raw = await self.binary.hgetall(self.keys.workspace(rid))
        out: dict[str, bytes] = {}
        for k, v in raw.items():
            out[k.decode() if isinstance(k, bytes) else str(k)] = v if isinstance(v, bytes) else str(v).encode()
        return out

    async def read_file(self, rid: str, path: str) -> bytes | None:
        data = await self.binary.hget(self.keys.workspace(rid), path)
        if data is None:
            return None
        return data if isinstance(data, bytes) else str(data).encode()

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
        args: list[Any] = [
            self.prefix,
            rid,
            owner,
            _now(),
            commit_id,
            step_key or "",
            step_value or "",
            len(pending.events),
        ]
        for etype, data in pending.events:
            args += [etype, event_json(data)]
        args.append(len(pending.workspace))
        for op in pending.workspace.values():
            args += [op.op.value, op.path, op.content]
        args.append(len(pending.ledger))
        args += [event_json(op.wire()) for op in pending.ledger]
        res = await self.commits.call(args)
        if int(res[0]) == -1:
            raise LeaseLost(rid)
        return CommitResult(
            last_event_id=int(res[0]), cancel_requested=bool(int(res[1])), pause_requested=bool(int(res[2]))
        )

    async def finish(self, rid: str, owner: str, status: RunStatus, fields: FinishFields) -> bool:
        record: dict[str, Any] = {
            "output": fields.output,
            "result": None if fields.result is None else json.dumps(fields.result, default=str),
            "stop_reason": fields.stop_reason.value,
            "stop_detail": fields.stop_detail,
            "error": fields.error,
            "cost": fields.cost.model_dump_json() if fields.cost else None,
            "cost_usd": fields.cost.total.usd if fields.cost else 0.0,
            "exhausted_limit": fields.exhausted_limit,
            "usage": fields.usage.model_dump_json() if fields.usage else None,
        }
        event: dict[str, Any] = {"status": status.value, "stop_reason": fields.stop_reason.value}
        if fields.stop_detail:
            event["detail"] = fields.stop_detail
        res = await self.scripts.finish(
            args=[self.prefix, rid, owner, _now(), status.value, json.dumps(record), json.dumps(event)]
        )
        return int(res) == 1

    async def queue_depth(self) -> QueueDepth:
        try:
            groups = await self.redis.xinfo_groups(self.keys.queue)
        except ResponseError:
            return QueueDepth(0, 0)
        for g in groups:
            if g["name"] == GROUP:
                return QueueDepth(int(g.get("lag") or 0), int(g.get("pending") or 0))
        return QueueDepth(0, 0)

    async def dead_letters(self, count: int = 100) -> list[DeadLetter]:
        rows = await self.redis.xrevrange(self.keys.dead, count=count)
        return [
            DeadLetter(id=eid, rid=f.get("rid", ""), reason=f.get("reason", ""), attempts=int(f.get("attempts") or 0))
            for eid, f in rows
        ]

    # -- the ledger ------------------------------------------------------------------------------
    async def set_caps(self, rid: str, owner: str, caps: Mapping[str, int]) -> RunCaps:
        res = await self.scripts.set_caps(
            args=[self.prefix, rid, owner, json.dumps({k: str(v) for k, v in caps.items()})]
        )
        own = frozenset((scope, limit) for scope, _, limit in (str(f).rpartition("|") for f in res[1:]))
        return RunCaps(own=own, outer=bool(int(res[0])))

    async def renew_holds(self, runs: Sequence[tuple[str, str]], *, ttl_s: float) -> set[str]:
        if not runs:
            return set()
        args: list[Any] = [self.prefix, ttl_s]
        for rid, owner in runs:
            args += [rid, owner]
        return set(await self.scripts.renew_holds(args=args) or [])

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
        res = await self.scripts.reserve(
            args=[
                self.prefix,
                rid,
                owner,
                _now(),
                res_id,
                ttl_s,
                json.dumps(list(scopes)),
                json.dumps({k: str(int(v)) for k, v in amounts.items()}),
            ]
        )
        if int(res[0]) == 1:
            return Reserved(_ledger_fields(res[1]))
        if int(res[0]) == -1:
            raise LeaseLost(rid)
        return Refusal(scope=str(res[1]), limit=str(res[2]), room=int(res[3]))

    async def ledger_snapshot(self, rid: str) -> LedgerSnapshot:
        raw = await self.redis.hgetall(self.keys.ledger(rid))
        return _ledger_fields(raw.items())

    # -- API keys --------------------------------------------------------------------------------
    async def put_key(self, key_hash: str, info: ApiKey) -> None:
        async with self.redis.pipeline(transaction=True) as p:
            p.hset(self.keys.api_keys, key_hash, info.model_dump_json())
            p.hset(self.keys.api_key_ids, info.id, key_hash)
            await p.execute()

    async def get_key(self, key_hash: str) -> ApiKey | None:
        raw = await self.redis.hget(self.keys.api_keys, key_hash)
        return ApiKey.model_validate_json(raw) if raw else None

    async def list_keys(self, tenant: str | None = None) -> list[ApiKey]:
        rows = [ApiKey.model_validate_json(v) for v in (await self.redis.hgetall(self.keys.api_keys)).values()]
        return sorted((k for k in rows if tenant is None or k.tenant == tenant), key=lambda k: k.created_at)

    async def revoke_key(self, key_id: str) -> bool:
        h = await self.redis.hget(self.keys.api_key_ids, key_id)
        raw = await self.redis.hget(self.keys.api_keys, h) if h else None
        if not raw:
            return False
        info = ApiKey.model_validate_json(raw).model_copy(update={"revoked": True})
        await self.redis.hset(self.keys.api_keys, h, info.model_dump_json())
        return True


def _ledger_fields(fields: Any) -> LedgerSnapshot:
    """A ledger hash's fields (``kind|scope|limit`` → amount; ``by|dim|name|metric``), as pairs or as the
    flat field, value list a script returns, read into a ``LedgerSnapshot``."""
    pairs = zip(fields[::2], fields[1::2], strict=True) if isinstance(fields, list) else fields
    snap = LedgerSnapshot()
    for raw_field, value in pairs:
        field = raw_field.decode() if isinstance(raw_field, bytes) else raw_field
        kind, _, rest = field.partition("|")
        if kind == "by":
            dim, name_metric = rest.split("|", 1)
            name, _, metric = name_metric.rpartition("|")
            snap.by[(dim, name, metric)] = int(value)
            continue
        scope, _, limit = rest.rpartition("|")
        target = {"cap": snap.caps, "used": snap.used, "resv": snap.reserved, "over": snap.over}.get(kind)
        if target is not None:
            target[(scope, limit)] = int(value)
    return snap
