"""The in-memory twin of the outbox, the webhook records and the service's gauges (a test double).

A mixin of ``InMemoryRunStore``: its ``_emit`` calls ``_outbox_record`` for every event, the same hook
as ``emit`` in ``common.lua``, so the contract's "written with the event" holds here too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from conclave.schema import WEBHOOK_EVENTS, DeliveryStatus, RunStatus, WebhookDelivery, WebhookSubscription

from .store_outbox import DeliveryAttempt, DeliveryOutcome, OutboxDepth, OutboxEntry, WebhookSecrets
from .store_stats import ServiceStats

__all__ = ["MemoryOutboxMixin"]


@dataclass
class _Pending:
    entry: OutboxEntry
    consumer: str | None = None
    delivered_at: float = 0.0


@dataclass
class _OutboxState:
    seq: int = 0
    entries: list[_Pending] = field(default_factory=list)
    deliveries: dict[str, WebhookDelivery] = field(default_factory=dict)
    order: dict[str, list[str]] = field(default_factory=dict)  # tenant -> dids, oldest first
    dead: dict[str, list[str]] = field(default_factory=dict)  # tenant -> dids, oldest death first
    subs: dict[str, dict[str, WebhookSubscription]] = field(default_factory=dict)
    secrets: dict[str, WebhookSecrets] = field(default_factory=dict)
    tenants: set[str] = field(default_factory=set)


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class MemoryOutboxMixin:
    """Outbox, subscriptions, secrets and stats for ``InMemoryRunStore`` (which provides ``_runs``,
    ``_queue`` and ``_dead``)."""

    _runs: dict[str, Any]
    _queue: list[Any]
    _dead: list[Any]

    async def _wait(self, timeout_s: float) -> None: ...  # InMemoryRunStore's: until the next change

    @property
    def _ob(self) -> _OutboxState:
        state: _OutboxState | None = self.__dict__.get("_outbox_state")
        if state is None:
            state = self.__dict__["_outbox_state"] = _OutboxState()
        return state

    # -- the hook ----------------------------------------------------------------------------------
    def _outbox_record(self, run: Any, seq: int, etype: str, data: dict[str, Any], now: float) -> None:
        """Called by ``_emit`` for every event it appends (``run`` is the run's ``Run``)."""
        ob = self._ob
        ob.tenants.add(run.tenant)
        if etype not in WEBHOOK_EVENTS:
            return
        text = json.dumps(data, default=str)
        hook = run.spec.webhook
        if hook is not None and etype in hook.events:
            self._outbox_put(run, seq, etype, text, now, "run", hook.url)
        for sub_id, sub in ob.subs.get(run.tenant, {}).items():
            if etype in sub.events:
                self._outbox_put(run, seq, etype, text, now, sub_id, sub.url)

    def _outbox_put(self, run: Any, seq: int, etype: str, data: str, now: float, dest: str, url: str) -> None:
        ob = self._ob
        mid = f"{run.id}.{seq}"
        did = f"{mid}@{dest}"
        if did in ob.deliveries:
            return
        ob.deliveries[did] = WebhookDelivery(
            id=mid,
            destination=dest,
            tenant=run.tenant,
            run_id=run.id,
            event_id=seq,
            type=etype,  # type: ignore[arg-type]
            url=url,
            status=DeliveryStatus.PENDING,
            created_at=_dt(now),
        )
        ob.order.setdefault(run.tenant, []).append(did)
        ob.seq += 1
        entry = OutboxEntry(
            qid=f"{int(now * 1000)}-{ob.seq}",
            did=did,
            mid=mid,
            destination=dest,
            url=url,
            tenant=run.tenant,
            run_id=run.id,
            event_id=seq,
            type=etype,
            ts=now,
            data=data,
        )
        ob.entries.append(_Pending(entry))

    # -- the outbox --------------------------------------------------------------------------------
    async def outbox_ready(self) -> None:
        return None

    async def outbox_read(self, consumer: str, count: int, block_ms: int) -> list[OutboxEntry]:
        fresh = [p for p in self._ob.entries if p.consumer is None][:count]
        if not fresh and block_ms > 0:  # block like XREADGROUP: a dispatcher's loop must not spin
            await self._wait(block_ms / 1000)
            fresh = [p for p in self._ob.entries if p.consumer is None][:count]
        now = time.monotonic()
        for p in fresh:
            p.consumer, p.delivered_at = consumer, now
        return [p.entry for p in fresh]

    async def outbox_reclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[OutboxEntry]:
        now = time.monotonic()
        out: list[OutboxEntry] = []
        for p in self._ob.entries:
            if len(out) >= count:
                break
            if p.consumer is not None and (now - p.delivered_at) * 1000 >= min_idle_ms:
                p.consumer, p.delivered_at = consumer, now
                out.append(p.entry)
        return out

    async def outbox_renew(self, consumer: str, qids: Sequence[str]) -> None:
        now = time.monotonic()
        wanted = set(qids)
        for p in self._ob.entries:
            if p.entry.qid in wanted:
                p.consumer, p.delivered_at = consumer, now

    async def outbox_depth(self) -> OutboxDepth:
        waiting = sum(1 for p in self._ob.entries if p.consumer is None)
        return OutboxDepth(waiting=waiting, in_flight=len(self._ob.entries) - waiting)

    async def delivery_attempted(
        self, did: str, *, now: float, status_code: int | None, error: str | None
    ) -> DeliveryAttempt:
        d = self._ob.deliveries[did]
        first = d.first_attempt_at or _dt(now)
        d = d.model_copy(
            update={
                "attempts": d.attempts + 1,
                "first_attempt_at": first,
                "last_attempt_at": _dt(now),
                "last_status_code": status_code,
                "last_error": error,
            }
        )
        self._ob.deliveries[did] = d
        return DeliveryAttempt(attempts=d.attempts, first_attempt_at=first.timestamp())

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
        ob = self._ob
        ob.entries = [p for p in ob.entries if p.entry.qid != qid]
        d = ob.deliveries.get(did)
        if d is None or d.status is not DeliveryStatus.PENDING:
            return False
        update: dict[str, Any] = {"status": DeliveryStatus(outcome.value), "finished_at": _dt(now)}
        if status_code is not None:
            update["last_status_code"] = status_code
        if error:
            update["last_error"] = error
        ob.deliveries[did] = d.model_copy(update=update)
        if outcome is DeliveryOutcome.DEAD:
            ob.dead.setdefault(d.tenant, []).append(did)
        return True

    async def get_delivery(self, did: str, *, tenant: str | None = None) -> WebhookDelivery | None:
        d = self._ob.deliveries.get(did)
        return None if d is None or (tenant is not None and d.tenant != tenant) else d

    async def list_deliveries(
        self, tenant: str, *, status: DeliveryStatus | None = None, limit: int = 50
    ) -> list[WebhookDelivery]:
        ob = self._ob
        if status is DeliveryStatus.DEAD:
            dids = list(reversed(ob.dead.get(tenant, [])))
        else:
            dids = list(reversed(ob.order.get(tenant, [])))
        rows = [ob.deliveries[d] for d in dids if d in ob.deliveries]
        if status is not None:
            rows = [r for r in rows if r.status is status]
        return rows[:limit]

    # -- subscriptions and secrets -----------------------------------------------------------------
    async def put_subscription(self, sub: WebhookSubscription) -> None:
        self._ob.subs.setdefault(sub.tenant, {})[sub.id] = sub

    async def list_subscriptions(self, tenant: str) -> list[WebhookSubscription]:
        return sorted(self._ob.subs.get(tenant, {}).values(), key=lambda s: (s.created_at, s.id))

    async def get_subscription(self, tenant: str, sub_id: str) -> WebhookSubscription | None:
        return self._ob.subs.get(tenant, {}).get(sub_id)

    async def delete_subscription(self, tenant: str, sub_id: str) -> bool:
        return self._ob.subs.get(tenant, {}).pop(sub_id, None) is not None

    async def webhook_secrets(self, tenant: str) -> WebhookSecrets | None:
        return self._ob.secrets.get(tenant)

    async def init_webhook_secret(self, tenant: str, secret: str) -> bool:
        if tenant in self._ob.secrets:
            return False
        self._ob.secrets[tenant] = WebhookSecrets(current=secret)
        return True

    async def rotate_webhook_secret(self, tenant: str, secret: str, *, previous_until: float) -> WebhookSecrets:
        old = self._ob.secrets.get(tenant)
        new = WebhookSecrets(
            current=secret,
            previous=old.current if old else None,
            previous_until=previous_until if old else None,
        )
        self._ob.secrets[tenant] = new
        return new

    # -- the gauges --------------------------------------------------------------------------------
    async def service_stats(self, now: float) -> ServiceStats:
        waiting = sum(1 for e in self._queue if e.consumer is None)
        ages = [now - int(e.qid.split("-", 1)[0]) / 1000 for e in self._queue]
        runs: dict[tuple[str, str], int] = {}
        for d in self._runs.values():
            key = (d.run.tenant, RunStatus(d.run.status).value)
            runs[key] = runs.get(key, 0) + 1
        depth = await self.outbox_depth()
        return ServiceStats(
            queue_waiting=waiting,
            queue_in_flight=len(self._queue) - waiting,
            queue_oldest_age_s=max(ages) if ages else None,
            dead_letters=len(self._dead),
            outbox_waiting=depth.waiting,
            outbox_in_flight=depth.in_flight,
            runs=runs,
        )
