"""``RetentionStore`` on Redis (the policy in ``P:retention``, the sweep in ``lua/purge.lua``)."""

from __future__ import annotations

from typing import Any

__all__ = ["RedisRetention"]


class RedisRetention:
    """Mixin of ``RedisRunStore`` (uses ``redis``, ``prefix``, ``scripts``)."""

    redis: Any
    prefix: str
    scripts: Any

    @property
    def _policy_key(self) -> str:
        return f"{self.prefix}:retention"

    async def set_retention(self, tenant: str | None, seconds: float | None) -> None:
        field = "default" if tenant is None else f"tenant:{tenant}"
        if seconds is None or seconds <= 0:
            if tenant is None:
                await self.redis.hset(self._policy_key, field, 0)
            else:
                await self.redis.hdel(self._policy_key, field)
        else:
            await self.redis.hset(self._policy_key, field, f"{seconds:.3f}")

    async def get_retention(self, tenant: str | None) -> float | None:
        own = await self.redis.hget(self._policy_key, f"tenant:{tenant}") if tenant is not None else None
        v = own if own is not None else await self.redis.hget(self._policy_key, "default")
        secs = float(v) if v is not None else 0.0
        return secs if secs > 0 else None

    async def purge_expired(self, limit: int = 500) -> int:
        return int(await self.scripts.purge(args=[self.prefix, limit]))

    async def purge_finished(self, tenant: str, older_than_s: float) -> int:
        secs, micros = await self.redis.time()
        cutoff = float(secs) + float(micros) / 1e6 - older_than_s
        total = 0
        while True:
            rids = await self.redis.zrangebyscore(f"{self.prefix}:finished:{tenant}", "-inf", cutoff, start=0, num=200)
            if not rids:
                return total
            n = int(await self.scripts.purge(args=[self.prefix, len(rids), *rids]))
            total += n
            if n == 0:  # only entries whose runs are gone already: drop them and go on
                await self.redis.zrem(f"{self.prefix}:finished:{tenant}", *rids)
