"""``TenantStore`` on Redis: budgets and spend of the scopes above a run (``lua/tenant.lua``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from conclave.core.periods import period_bounds, period_id
from conclave.core.store_tenants import LIMITS, spend_lines
from conclave.core.store_types import Refusal
from conclave.schema import PERIODS, BudgetLimits, Period, ScopeBudget, TenantSpend
from conclave.schema.money import from_pico, to_pico

__all__ = ["RedisTenants"]


def _caps_of(limits: BudgetLimits) -> dict[str, int]:
    out: dict[str, int] = {}
    for name in LIMITS:
        v = getattr(limits, name)
        if v is not None:
            out[name] = to_pico(v) if name == "usd" else int(v)
    return out


def _limits_from(caps: Mapping[str, int]) -> BudgetLimits:
    values: dict[str, float | int] = {k: (from_pico(v) if k == "usd" else v) for k, v in caps.items() if k in LIMITS}
    return BudgetLimits.model_validate(values)


class RedisTenants:
    """Mixin of ``RedisRunStore`` (uses ``redis``, ``prefix``, ``scripts``)."""

    redis: Any
    prefix: str
    scripts: Any

    def _budget_key(self, scope: str) -> str:
        return f"{self.prefix}:budget:{scope}"

    async def _clock(self) -> float:
        secs, micros = await self.redis.time()
        return float(secs) + float(micros) / 1e6

    async def set_budget(self, scope: str, budget: ScopeBudget) -> None:
        key = self._budget_key(scope)
        fields = {
            f"cap|{period}|{limit}": str(cap)
            for period, limits in budget.periods.items()
            for limit, cap in _caps_of(limits).items()
        }
        async with self.redis.pipeline(transaction=True) as p:
            p.delete(key)
            if fields:
                p.hset(key, mapping=fields)
            await p.execute()

    async def get_budget(self, scope: str) -> ScopeBudget:
        raw = await self.redis.hgetall(self._budget_key(scope))
        per: dict[str, dict[str, int]] = {}
        for field, value in raw.items():
            _, period, limit = field.split("|", 2)
            per.setdefault(period, {})[limit] = int(value)
        return ScopeBudget(periods={p: _limits_from(c) for p, c in per.items() if p in PERIODS})

    async def spend(self, scope: str, period: Period) -> TenantSpend:
        now = await self._clock()
        pid = period_id(period, now)
        raw = await self.redis.hgetall(f"{self.prefix}:spend:{scope}:{period}:{pid}")
        caps_raw = await self.redis.hgetall(self._budget_key(scope))
        caps = {f.split("|", 2)[2]: int(v) for f, v in caps_raw.items() if f.startswith(f"cap|{period}|")}
        kinds: dict[str, dict[str, int]] = {"used": {}, "resv": {}, "over": {}}
        by_model: dict[str, dict[str, float]] = {}
        for field, value in raw.items():
            kind, _, rest = field.partition("|")
            if kind == "by":
                _, model, metric = rest.split("|", 2)
                v = int(value)
                by_model.setdefault(model, {})[metric] = from_pico(v) if metric == "usd" else float(v)
            elif kind in kinds:
                kinds[kind][rest] = int(value)
        start, end = period_bounds(period, now)
        return TenantSpend(
            scope=scope,
            period=period,
            period_id=pid,
            starts_at=start,
            ends_at=end,
            lines=spend_lines(caps, kinds["used"], kinds["resv"], kinds["over"]),
            by_model=by_model,
        )

    async def reserve_call(
        self, tenant: str, key_id: str | None, res_id: str, *, amounts: Mapping[str, int], ttl_s: float
    ) -> Refusal | None:
        res = await self.scripts.call_reserve(
            args=[
                self.prefix,
                tenant,
                key_id or "",
                res_id,
                ttl_s,
                json.dumps({k: str(int(v)) for k, v in amounts.items()}),
            ]
        )
        if int(res[0]) == 1:
            return None
        return Refusal(scope=str(res[1]), limit=str(res[2]), room=int(res[3]))

    async def commit_call(
        self,
        tenant: str,
        key_id: str | None,
        res_id: str,
        *,
        used: Mapping[str, int],
        by: Mapping[str, int] | None = None,
    ) -> None:
        await self.scripts.call_commit(
            args=[
                self.prefix,
                tenant,
                key_id or "",
                res_id,
                json.dumps({k: str(int(v)) for k, v in used.items() if v}),
                json.dumps({k: str(int(v)) for k, v in (by or {}).items() if v}),
            ]
        )
