"""Schedules on Redis (a mixin of ``RedisRunStore``): records in hashes, a due index, and the tick
claim in Lua (``lua/schedule_*.lua``). Key layout: ``conclave.core.keys``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from conclave.core.keys import Keys
from conclave.core.store_schedules import ScheduleState, StatusChange, TickClaim, TickOutcome
from conclave.schema import Schedule, ScheduleRequest, ScheduleStatus

__all__ = ["RedisSchedulesMixin"]


def _f(v: str | None) -> float | None:
    return float(v) if v not in (None, "") else None


def _dt(v: str | None) -> datetime | None:
    x = _f(v)
    return None if x is None else datetime.fromtimestamp(x, UTC)


def _due(v: float | None) -> str:
    return "" if v is None else f"{v:.3f}"


class RedisSchedulesMixin:
    """Needs ``self.redis`` (decoding client), ``self.keys``, ``self.prefix`` and ``self.scripts``."""

    redis: Any
    keys: Keys
    prefix: str
    scripts: Any

    async def put_schedule(self, schedule: Schedule, *, next_due: float | None) -> None:
        req = ScheduleRequest(
            cron=schedule.cron,
            timezone=schedule.timezone,
            task=schedule.task,
            name=schedule.name,
            end_at=schedule.end_at,
            missed=schedule.missed,
        )
        created = schedule.created_at.timestamp()
        key = self.keys.schedule(schedule.id)
        async with self.redis.pipeline(transaction=True) as p:
            p.hset(
                key,
                mapping={
                    "id": schedule.id,
                    "tenant": schedule.tenant,
                    "spec": req.model_dump_json(exclude_none=True),
                    "status": schedule.status.value,
                    "created_at": f"{created:.6f}",
                    "cursor": f"{created:.3f}",
                    "pending": "",
                    "runs": 0,
                    "next_at": _due(next_due),
                },
            )
            p.zadd(self.keys.schedules(schedule.tenant), {schedule.id: int(created * 1000)})
            if next_due is not None and schedule.status is ScheduleStatus.ACTIVE:
                p.zadd(self.keys.schedules_due, {schedule.id: next_due})
            await p.execute()

    @staticmethod
    def _state(f: dict[str, str]) -> ScheduleState:
        req = ScheduleRequest.model_validate_json(f["spec"])
        sched = Schedule.from_request(
            req,
            id=f["id"],
            tenant=f["tenant"],
            status=ScheduleStatus(f["status"]),
            created_at=_dt(f["created_at"]) or datetime.now(UTC),
            next_tick_at=_dt(f.get("next_at")),
            last_tick_at=_dt(f.get("last_tick")),
            last_run_id=f.get("last_run") or None,
            runs=int(f.get("runs") or 0),
        )
        pending = f.get("pending")
        return ScheduleState(schedule=sched, cursor=_f(f.get("cursor")), pending=int(pending) if pending else None)

    async def get_schedule(self, sid: str, *, tenant: str | None = None) -> ScheduleState | None:
        f = await self.redis.hgetall(self.keys.schedule(sid))
        if not f or (tenant is not None and f.get("tenant") != tenant):
            return None
        return self._state(f)

    async def list_schedules(self, tenant: str) -> list[ScheduleState]:
        sids = await self.redis.zrange(self.keys.schedules(tenant), 0, -1)
        async with self.redis.pipeline(transaction=False) as p:
            for sid in sids:
                p.hgetall(self.keys.schedule(sid))
            rows = await p.execute()
        return [self._state(f) for f in rows if f]

    async def delete_schedule(self, sid: str, *, tenant: str) -> bool:
        key = self.keys.schedule(sid)
        if await self.redis.hget(key, "tenant") != tenant:
            return False
        async with self.redis.pipeline(transaction=True) as p:
            p.delete(key)
            p.zrem(self.keys.schedules(tenant), sid)
            p.zrem(self.keys.schedules_due, sid)
            await p.execute()
        return True

    async def set_schedule_status(
        self, sid: str, *, tenant: str, status: ScheduleStatus, now: float, next_due: float | None
    ) -> StatusChange:
        res = await self.scripts.schedule_status(
            args=[self.prefix, sid, tenant, status.value, f"{now:.3f}", _due(next_due)]
        )
        return StatusChange(res[0])

    async def due_schedules(self, now: float, limit: int = 100) -> list[str]:
        return list(await self.redis.zrangebyscore(self.keys.schedules_due, "-inf", now, start=0, num=limit))

    async def claim_tick(self, sid: str, tick: int, *, now: float, stale_s: float) -> TickClaim:
        res = await self.scripts.schedule_claim(args=[self.prefix, sid, str(int(tick)), f"{now:.3f}", stale_s])
        outcome = TickOutcome(res[0])
        return TickClaim(outcome, int(res[1]) if len(res) > 1 else None)

    async def record_tick(
        self,
        sid: str,
        tick: int,
        run_id: str,
        *,
        next_due: float | None,
        idempotency: tuple[str, str] | None = None,
        idempotency_ttl_s: float = 86400,
    ) -> bool:
        idem = self.keys.idempotency(*idempotency) if idempotency else ""
        res = await self.scripts.schedule_done(
            args=[self.prefix, sid, str(int(tick)), run_id, _due(next_due), idem, max(1, int(idempotency_ttl_s))]
        )
        return int(res) == 1

    async def skip_ticks(self, sid: str, *, upto: int | None, next_due: float | None) -> bool:
        res = await self.scripts.schedule_skip(
            args=[self.prefix, sid, "" if upto is None else str(int(upto)), _due(next_due)]
        )
        return int(res) == 1
