"""Tenant and key budgets, and spend, as the admin API and the SDK see them.

Setting a budget takes effect for every call reserved afterwards, in every run and on the OpenAI endpoint
(runs in flight learn within a lease renewal that they must reserve). A run whose tenant's or key's budget
ran out is paused (``pause_reason`` ``tenant_budget``), never failed, and continues by itself once there is
room again: at once when an admin changes the budget, and when a period rolls over (each worker looks every
``RESUME_EVERY_S`` seconds; a resumed run that still finds no room pauses again at its next call).
"""

from __future__ import annotations

import logging

from conclave.core.store import RunStore
from conclave.core.store_tenants import key_scope, tenant_scope
from conclave.schema import PERIODS, Period, Run, ScopeBudget, TenantSpend

from .errors import NotFound

__all__ = ["RESUME_EVERY_S", "TenantAdmin", "resume_budget_paused"]

log = logging.getLogger(__name__)

#: How often a worker looks for budget-paused runs that have room again (a new day, a new month).
RESUME_EVERY_S = 30.0


async def _has_room(store: RunStore, run: Run) -> bool:
    """True when no capped limit of the run's tenant or key is used up in any capped period."""
    scopes = [tenant_scope(run.tenant)] + ([key_scope(run.key_id)] if run.key_id else [])
    for scope in scopes:
        budget = await store.get_budget(scope)
        for period in budget.periods:
            spend = await store.spend(scope, period)
            if any(line.cap is not None and line.left is not None and line.left <= 0 for line in spend.lines):
                return False
    return True


async def resume_budget_paused(store: RunStore, tenant: str) -> list[str]:
    """Resume ``tenant``'s runs paused by a budget that has room again; returns their ids."""
    resumed = []
    for rid in await store.paused_runs(tenant, reason="tenant_budget"):
        run = await store.get(rid)
        if run is None or run.pause_reason != "tenant_budget" or not await _has_room(store, run):
            continue
        res = await store.resume(rid, tenant=tenant)
        if res.outcome.value in ("resumed", "enqueued"):
            log.info("run %s: resumed, its budget has room again", rid)
            resumed.append(rid)
    return resumed


class TenantAdmin:
    def __init__(self, store: RunStore) -> None:
        self.store = store

    async def _key_tenant(self, key_id: str) -> str:
        for k in await self.store.list_keys():
            if k.id == key_id:
                return k.tenant
        raise NotFound("key_not_found", f"no key {key_id!r}")

    async def set_tenant_budget(self, tenant: str, budget: ScopeBudget) -> ScopeBudget:
        await self.store.set_budget(tenant_scope(tenant), budget)
        await resume_budget_paused(self.store, tenant)
        return await self.store.get_budget(tenant_scope(tenant))

    async def set_key_budget(self, key_id: str, budget: ScopeBudget) -> ScopeBudget:
        tenant = await self._key_tenant(key_id)
        await self.store.set_budget(key_scope(key_id), budget)
        await resume_budget_paused(self.store, tenant)
        return await self.store.get_budget(key_scope(key_id))

    async def tenant_budget(self, tenant: str) -> ScopeBudget:
        return await self.store.get_budget(tenant_scope(tenant))

    async def key_budget(self, key_id: str) -> ScopeBudget:
        await self._key_tenant(key_id)
        return await self.store.get_budget(key_scope(key_id))

    async def spend(self, scope: str, periods: tuple[Period, ...] = PERIODS) -> list[TenantSpend]:
        """What ``scope`` (``tenant/<t>`` or ``key/<k>``) spent in the current period of each of ``periods``."""
        return [await self.store.spend(scope, p) for p in periods]
