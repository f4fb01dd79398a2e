"""``TenantStore`` in memory: the same scopes, periods and arithmetic as ``controller/lua/tenant.lua``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from conclave.schema import PERIODS, BudgetLimits, Period, ScopeBudget, TenantSpend

from .money import from_pico, to_pico
from .periods import period_bounds, period_id
from .store_tenants import LIMITS, spend_lines
from .store_types import Refusal

__all__ = ["MemoryTenants", "OuterHold"]


@dataclass
class _Spend:
    used: dict[str, int] = field(default_factory=dict)
    resv: dict[str, int] = field(default_factory=dict)
    over: dict[str, int] = field(default_factory=dict)
    by: dict[tuple[str, str], int] = field(default_factory=dict)


@dataclass(frozen=True)
class OuterHold:
    """What one call holds in one scope's period (the spend counter it was taken from)."""

    scope: str
    period: Period
    pid: str
    held: dict[str, int]


def outer_scopes(tenant: str, key_id: str | None) -> list[str]:
    return [f"tenant/{tenant}"] + ([f"key/{key_id}"] if key_id else [])


class MemoryTenants:
    """Mixin of ``InMemoryRunStore``."""

    def _tenants_init(self) -> None:
        self._budgets: dict[str, dict[Period, dict[str, int]]] = {}
        self._spend: dict[tuple[str, Period, str], _Spend] = {}
        self._call_holds: dict[str, list[OuterHold]] = {}
        self._call_expiry: dict[str, float] = {}
        self._calls_done: set[str] = set()

    def _spend_of(self, scope: str, period: Period, pid: str) -> _Spend:
        return self._spend.setdefault((scope, period, pid), _Spend())

    # -- the arithmetic shared with the run ledger ----------------------------------------------
    def _outer_reserve(
        self, scopes: list[str], amounts: Mapping[str, int], now: float
    ) -> tuple[list[OuterHold], Refusal | None]:
        held: list[OuterHold] = []
        for scope in scopes:
            for period, caps in self._budgets.get(scope, {}).items():
                pid = period_id(period, now)
                sp = self._spend_of(scope, period, pid)
                h: dict[str, int] = {}
                for limit, amount in amounts.items():
                    cap = caps.get(limit)
                    if cap is None:
                        continue
                    room = cap - sp.used.get(limit, 0) - sp.resv.get(limit, 0)
                    if int(amount) > room:
                        return [], Refusal(scope=f"{scope}@{period}", limit=limit, room=max(room, 0))
                    h[limit] = int(amount)
                if h:
                    held.append(OuterHold(scope, period, pid, h))
        for oh in held:
            sp = self._spend_of(oh.scope, oh.period, oh.pid)
            for limit, amount in oh.held.items():
                sp.resv[limit] = sp.resv.get(limit, 0) + amount
        return held, None

    def _outer_release(self, held: list[OuterHold]) -> None:
        for oh in held:
            sp = self._spend_of(oh.scope, oh.period, oh.pid)
            for limit, amount in oh.held.items():
                sp.resv[limit] = sp.resv.get(limit, 0) - amount

    def _outer_use(
        self,
        scopes: list[str],
        used: Mapping[str, int],
        by: Mapping[str, int],
        now: float,
        holds: list[OuterHold],
    ) -> None:
        where = {(h.scope, h.period): h.pid for h in holds}
        for scope in scopes:
            caps_by_period = self._budgets.get(scope, {})
            for period in PERIODS:
                pid = where.get((scope, period)) or period_id(period, now)
                sp = self._spend_of(scope, period, pid)
                caps = caps_by_period.get(period, {})
                for limit, amount in used.items():
                    n = int(amount)
                    if not n:
                        continue
                    cap = caps.get(limit)
                    if cap is None:
                        sp.used[limit] = sp.used.get(limit, 0) + n
                        continue
                    room = max(cap - sp.used.get(limit, 0) - sp.resv.get(limit, 0), 0)
                    fits = min(n, room)
                    sp.used[limit] = sp.used.get(limit, 0) + fits
                    if n > fits:
                        sp.over[limit] = sp.over.get(limit, 0) + n - fits
                for key, amount in by.items():
                    if amount and key.startswith("model|"):
                        _, model, metric = key.split("|", 2)
                        sp.by[(model, metric)] = sp.by.get((model, metric), 0) + int(amount)

    # -- the contract ----------------------------------------------------------------------------
    async def set_budget(self, scope: str, budget: ScopeBudget) -> None:
        per: dict[Period, dict[str, int]] = {}
        for period, limits in budget.periods.items():
            caps = {
                name: (to_pico(v) if name == "usd" else int(v))
                for name in LIMITS
                if (v := getattr(limits, name)) is not None
            }
            if caps:
                per[period] = caps
        if per:
            self._budgets[scope] = per
        else:
            self._budgets.pop(scope, None)

    async def get_budget(self, scope: str) -> ScopeBudget:
        per = self._budgets.get(scope, {})
        return ScopeBudget(
            periods={
                p: BudgetLimits.model_validate({k: (from_pico(v) if k == "usd" else v) for k, v in caps.items()})
                for p, caps in per.items()
            }
        )

    async def spend(self, scope: str, period: Period) -> TenantSpend:
        now = time.time()
        pid = period_id(period, now)
        sp = self._spend_of(scope, period, pid)
        by_model: dict[str, dict[str, float]] = {}
        for (model, metric), v in sp.by.items():
            by_model.setdefault(model, {})[metric] = from_pico(v) if metric == "usd" else float(v)
        start, end = period_bounds(period, now)
        caps = self._budgets.get(scope, {}).get(period, {})
        return TenantSpend(
            scope=scope,
            period=period,
            period_id=pid,
            starts_at=start,
            ends_at=end,
            lines=spend_lines(caps, sp.used, sp.resv, sp.over),
            by_model=by_model,
        )

    async def reserve_call(
        self, tenant: str, key_id: str | None, res_id: str, *, amounts: Mapping[str, int], ttl_s: float
    ) -> Refusal | None:
        if res_id in self._call_holds:
            return None
        now = time.time()
        for old in [r for r, exp in self._call_expiry.items() if exp <= now]:
            self._outer_release(self._call_holds.pop(old, []))
            self._call_expiry.pop(old, None)
        held, refusal = self._outer_reserve(outer_scopes(tenant, key_id), amounts, now)
        if refusal is not None:
            return refusal
        self._call_holds[res_id] = held
        self._call_expiry[res_id] = now + ttl_s
        return None

    async def commit_call(
        self,
        tenant: str,
        key_id: str | None,
        res_id: str,
        *,
        used: Mapping[str, int],
        by: Mapping[str, int] | None = None,
    ) -> None:
        if res_id in self._calls_done:
            return
        held = self._call_holds.pop(res_id, [])
        self._call_expiry.pop(res_id, None)
        self._outer_release(held)
        self._outer_use(outer_scopes(tenant, key_id), used, by or {}, time.time(), held)
        self._calls_done.add(res_id)
