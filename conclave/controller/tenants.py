"""Tenant and key budgets, and spend, as the admin API and the SDK see them.

Setting a budget takes effect for every call reserved afterwards, in every run and on the OpenAI endpoint
(runs in flight learn within a lease renewal that they must reserve). Raising a cap resumes the tenant's
runs that its budget paused.
"""

from __future__ import annotations

from conclave.core.store import RunStore
from conclave.core.store_tenants import key_scope, tenant_scope
from conclave.schema import PERIODS, Period, ScopeBudget, TenantSpend

from .errors import NotFound

__all__ = ["TenantAdmin"]


class TenantAdmin:
    def __init__(self, store: RunStore) -> None:
        self.store = store

    async def _key_exists(self, key_id: str) -> None:
        if not any(k.id == key_id for k in await self.store.list_keys()):
            raise NotFound("key_not_found", f"no key {key_id!r}")

    async def set_tenant_budget(self, tenant: str, budget: ScopeBudget) -> ScopeBudget:
        await self.store.set_budget(tenant_scope(tenant), budget)
        return await self.store.get_budget(tenant_scope(tenant))

    async def set_key_budget(self, key_id: str, budget: ScopeBudget) -> ScopeBudget:
        await self._key_exists(key_id)
        await self.store.set_budget(key_scope(key_id), budget)
        return await self.store.get_budget(key_scope(key_id))

    async def tenant_budget(self, tenant: str) -> ScopeBudget:
        return await self.store.get_budget(tenant_scope(tenant))

    async def key_budget(self, key_id: str) -> ScopeBudget:
        await self._key_exists(key_id)
        return await self.store.get_budget(key_scope(key_id))

    async def spend(self, scope: str, periods: tuple[Period, ...] = PERIODS) -> list[TenantSpend]:
        """What ``scope`` (``tenant/<t>`` or ``key/<k>``) spent in the current period of each of ``periods``."""
        return [await self.store.spend(scope, p) for p in periods]
