"""The outbox, webhook records and service gauges on Redis (a mixin of ``RedisRunStore``).

The outbox entries themselves are written by ``lua/outbox.lua`` from ``emit`` in every script, in the
call that commits the event; this module reads and ends them. Key layout: ``conclave.core.keys``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import ResponseError

from conclave.core.keys import GROUP, OUTBOX_GROUP, Keys
from conclave.core.store_outbox import DeliveryAttempt, DeliveryOutcome, OutboxDepth, OutboxEntry, WebhookSecrets
from conclave.core.store_stats import ServiceStats
from conclave.schema import DeliveryStatus, RunStatus, WebhookDelivery, WebhookSubscription

__all__ = ["RedisOutboxMixin"]


def _dt(v: str | None) -> datetime | None:
    return datetime.fromtimestamp(float(v), UTC) if v else None


def _entry(qid: str, f: dict[str, str]) -> OutboxEntry:
    return OutboxEntry(
        qid=qid,
        did=f.get("did", ""),
        mid=f.get("mid", ""),
        destination=f.get("dest", ""),
        url=f.get("url", ""),
        tenant=f.get("tenant", ""),
        run_id=f.get("rid", ""),
        event_id=int(f.get("seq") or 0),
        type=f.get("type", ""),
        ts=float(f.get("ts") or 0),
        data=f.get("data", "{}"),
    )


def _delivery(f: dict[str, str]) -> WebhookDelivery:
    return WebhookDelivery(
        id=f["id"],
        destination=f["destination"],
        tenant=f["tenant"],
        run_id=f["run_id"],
        event_id=int(f["event_id"]),
        type=f["type"],  # type: ignore[arg-type]
        url=f["url"],
        status=DeliveryStatus(f["status"]),
        attempts=int(f.get("attempts") or 0),
        last_status_code=int(f["last_status_code"]) if f.get("last_status_code") else None,
        last_error=f.get("last_error") or None,
        created_at=_dt(f["created_at"]) or datetime.now(UTC),
        first_attempt_at=_dt(f.get("first_attempt_at")),
        last_attempt_at=_dt(f.get("last_attempt_at")),
        finished_at=_dt(f.get("finished_at")),
    )


class RedisOutboxMixin:
    """Needs ``self.redis`` (decoding client), ``self.keys``, ``self.prefix`` and ``self.scripts``."""

    redis: Any
    keys: Keys
    prefix: str
    scripts: Any

    # -- the outbox --------------------------------------------------------------------------------
    async def outbox_ready(self) -> None:
        try:
            await self.redis.xgroup_create(self.keys.outbox, OUTBOX_GROUP, id="0", mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    async def outbox_read(self, consumer: str, count: int, block_ms: int) -> list[OutboxEntry]:
        res = await self.redis.xreadgroup(OUTBOX_GROUP, consumer, {self.keys.outbox: ">"}, count=count, block=block_ms)
        if not res:
            return []
        return [_entry(qid, f) for qid, f in res[0][1]]

    async def outbox_reclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[OutboxEntry]:
        res = await self.redis.xautoclaim(self.keys.outbox, OUTBOX_GROUP, consumer, min_idle_ms, "0-0", count=count)
        entries = res[1] if len(res) > 1 else []
        return [_entry(qid, f) for qid, f in entries if f is not None]

    async def outbox_renew(self, consumer: str, qids: Sequence[str]) -> None:
        if qids:
            await self.redis.xclaim(self.keys.outbox, OUTBOX_GROUP, consumer, 0, list(qids), justid=True)

    async def outbox_depth(self) -> OutboxDepth:
        lag, pending = await self._group_depth(self.keys.outbox, OUTBOX_GROUP)
        return OutboxDepth(waiting=lag, in_flight=pending)

    async def _group_depth(self, stream: str, group: str) -> tuple[int, int]:
        try:
            groups = await self.redis.xinfo_groups(stream)
        except ResponseError:
            return 0, 0
        for g in groups:
            if g["name"] == group:
                return int(g.get("lag") or 0), int(g.get("pending") or 0)
        return 0, 0

    async def delivery_attempted(
        self, did: str, *, now: float, status_code: int | None, error: str | None
    ) -> DeliveryAttempt:
        key = self.keys.delivery(did)
        stamp = f"{now:.6f}"
        async with self.redis.pipeline(transaction=True) as p:
            p.hincrby(key, "attempts", 1)
            p.hsetnx(key, "first_attempt_at", stamp)
            p.hset(
                key,
                mapping={"last_attempt_at": stamp, "last_status_code": status_code or "", "last_error": error or ""},
            )
            p.hget(key, "first_attempt_at")
            attempts, _, _, first = await p.execute()
        return DeliveryAttempt(attempts=int(attempts), first_attempt_at=float(first or now))

    async def delivery_done(
        self,
        did: str,
        qid: str,
        outcome: DeliveryOutcome,
        *,
        now: float,
        status_code: int | None = None,
        error: str | None = None,
        keep_s: float = 7 * 86400,
    ) -> bool:
        res = await self.scripts.delivery_done(
            args=[
                self.prefix,
                did,
                qid,
                outcome.value,
                f"{now:.6f}",
                "" if status_code is None else str(status_code),
                error or "",
                max(1, int(keep_s)),
            ]
        )
        return int(res) == 1

    async def get_delivery(self, did: str, *, tenant: str | None = None) -> WebhookDelivery | None:
        f = await self.redis.hgetall(self.keys.delivery(did))
        if not f or (tenant is not None and f.get("tenant") != tenant):
            return None
        return _delivery(f)

    async def list_deliveries(
        self, tenant: str, *, status: DeliveryStatus | None = None, limit: int = 50
    ) -> list[WebhookDelivery]:
        index = self.keys.dead_deliveries(tenant) if status is DeliveryStatus.DEAD else self.keys.deliveries(tenant)
        out: list[WebhookDelivery] = []
        start, batch = 0, max(limit, 50)
        while len(out) < limit:
            dids = await self.redis.zrevrange(index, start, start + batch - 1)
            if not dids:
                break
            start += len(dids)
            async with self.redis.pipeline(transaction=False) as p:
                for did in dids:
                    p.hgetall(self.keys.delivery(did))
                rows = await p.execute()
            gone = [did for did, f in zip(dids, rows, strict=True) if not f]
            if gone:  # expired records leave their index entry behind: trim it as we pass
                await self.redis.zrem(index, *gone)
                start -= len(gone)
            for f in rows:
                if f and (status is None or f.get("status") == status.value):
                    out.append(_delivery(f))
            if status is not None and status is not DeliveryStatus.DEAD and start > 20 * limit:
                break  # a rare status far back in a long history: the newest matches are enough
        return out[:limit]

    # -- subscriptions and secrets -----------------------------------------------------------------
    async def put_subscription(self, sub: WebhookSubscription) -> None:
        record = {
            "url": sub.url,
            "events": list(sub.events),
            "description": sub.description,
            "created_at": sub.created_at.timestamp(),
        }
        await self.redis.hset(self.keys.webhook_subscriptions(sub.tenant), sub.id, json.dumps(record))

    def _sub(self, tenant: str, sub_id: str, raw: str) -> WebhookSubscription:
        r = json.loads(raw)
        return WebhookSubscription(
            id=sub_id,
            tenant=tenant,
            url=r["url"],
            events=r["events"],
            description=r.get("description", ""),
            created_at=datetime.fromtimestamp(float(r["created_at"]), UTC),
        )

    async def list_subscriptions(self, tenant: str) -> list[WebhookSubscription]:
        raw = await self.redis.hgetall(self.keys.webhook_subscriptions(tenant))
        subs = [self._sub(tenant, k, v) for k, v in raw.items()]
        return sorted(subs, key=lambda s: (s.created_at, s.id))

    async def get_subscription(self, tenant: str, sub_id: str) -> WebhookSubscription | None:
        raw = await self.redis.hget(self.keys.webhook_subscriptions(tenant), sub_id)
        return self._sub(tenant, sub_id, raw) if raw else None

    async def delete_subscription(self, tenant: str, sub_id: str) -> bool:
        return bool(await self.redis.hdel(self.keys.webhook_subscriptions(tenant), sub_id))

    async def webhook_secrets(self, tenant: str) -> WebhookSecrets | None:
        f = await self.redis.hgetall(self.keys.webhook_secret(tenant))
        if not f.get("current"):
            return None
        until = f.get("previous_until")
        return WebhookSecrets(
            current=f["current"], previous=f.get("previous") or None, previous_until=float(until) if until else None
        )

    async def init_webhook_secret(self, tenant: str, secret: str) -> bool:
        return bool(await self.redis.hsetnx(self.keys.webhook_secret(tenant), "current", secret))

    async def rotate_webhook_secret(self, tenant: str, secret: str, *, previous_until: float) -> WebhookSecrets:
        old = await self.scripts.rotate_secret(args=[self.prefix, tenant, secret, f"{previous_until:.3f}"])
        if old:
            return WebhookSecrets(current=secret, previous=str(old), previous_until=previous_until)
        return WebhookSecrets(current=secret)

    # -- the gauges --------------------------------------------------------------------------------
    async def service_stats(self, now: float) -> ServiceStats:
        """One pass over the queue's consumer group, the dead-letter and outbox streams, and the
        per-status indexes of every known tenant."""
        q = self.keys.queue
        waiting, in_flight = await self._group_depth(q, GROUP)
        grouped = await self._has_group(q, GROUP)
        if not grouped:  # no worker has read the queue yet: every entry waits
            waiting, in_flight = int(await self.redis.xlen(q)), 0
        oldest: list[float] = []
        if in_flight:
            summary = await self.redis.xpending(q, GROUP)
            if summary and summary.get("min"):
                oldest.append(_id_ms(summary["min"]))
        if waiting:
            last = await self._last_delivered(q, GROUP) if grouped else None
            rows = await self.redis.xrange(q, min=f"({last}" if last else "-", max="+", count=1)
            if rows:
                oldest.append(_id_ms(rows[0][0]))
        ob = await self.outbox_depth()
        tenants = sorted(await self.redis.smembers(self.keys.tenants))
        statuses = [s.value for s in RunStatus]
        async with self.redis.pipeline(transaction=False) as p:
            p.xlen(self.keys.dead)
            for t in tenants:
                for s in statuses:
                    p.zcard(self.keys.runs(t, status=s))
            res = await p.execute()
        counts = iter(res[1:])
        runs = {(t, s): int(next(counts)) for t in tenants for s in statuses}
        return ServiceStats(
            queue_waiting=waiting,
            queue_in_flight=in_flight,
            queue_oldest_age_s=max(0.0, now - min(oldest) / 1000) if oldest else None,
            dead_letters=int(res[0]),
            outbox_waiting=ob.waiting,
            outbox_in_flight=ob.in_flight,
            runs={k: v for k, v in runs.items() if v},
        )

    async def _has_group(self, stream: str, group: str) -> bool:
        try:
            return any(g["name"] == group for g in await self.redis.xinfo_groups(stream))
        except ResponseError:
            return False

    async def _last_delivered(self, stream: str, group: str) -> str | None:
        try:
            groups = await self.redis.xinfo_groups(stream)
        except ResponseError:
            return None
        for g in groups:
            if g["name"] == group:
                v = g.get("last-delivered-id")
                return None if v in (None, "0-0") else str(v)
        return None


def _id_ms(stream_id: str) -> float:
    return float(str(stream_id).split("-", 1)[0])
