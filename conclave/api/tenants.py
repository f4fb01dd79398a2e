"""HTTP wiring of tenant and key budgets (admin) and of a caller's own spend."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from conclave.controller.tenants import TenantAdmin
from conclave.core.store_tenants import key_scope, tenant_scope
from conclave.schema import ScopeBudget, StrictModel, TenantSpend

from .auth import Caller, admin_dependency, caller_dependency

__all__ = ["MySpend", "tenants_router"]


class MySpend(StrictModel):
    """The caller's spend: its tenant's in every period, and its key's when it called with one."""

    tenant: list[TenantSpend]
    key: list[TenantSpend] | None = None


def tenants_router(services: Any, errors: dict[int | str, dict[str, Any]]) -> APIRouter:
    r = APIRouter(prefix="/v1", responses=errors)
    AdminDep = Annotated[Caller, Depends(admin_dependency(lambda: services.service))]
    CallerDep = Annotated[Caller, Depends(caller_dependency(lambda: services.service))]

    def admin() -> TenantAdmin:
        return TenantAdmin(services.service.store)

    @r.put(
        "/admin/tenants/{tenant}/budget", response_model=ScopeBudget, tags=["admin"], summary="Set a tenant's budget"
    )
    async def set_tenant_budget(tenant: str, budget: ScopeBudget, _: AdminDep) -> ScopeBudget:
        """Caps per period (``daily``, ``monthly``, ``none``) on all of the tenant's runs and endpoint calls
        together; replaces the previous budget (an empty body removes every cap)."""
        return await admin().set_tenant_budget(tenant, budget)

    @r.get("/admin/tenants/{tenant}/budget", response_model=ScopeBudget, tags=["admin"], summary="A tenant's budget")
    async def get_tenant_budget(tenant: str, _: AdminDep) -> ScopeBudget:
        return await admin().tenant_budget(tenant)

    @r.get(
        "/admin/tenants/{tenant}/spend", response_model=list[TenantSpend], tags=["admin"], summary="A tenant's spend"
    )
    async def tenant_spend(tenant: str, _: AdminDep) -> list[TenantSpend]:
        return await admin().spend(tenant_scope(tenant))

    @r.put("/admin/keys/{key_id}/budget", response_model=ScopeBudget, tags=["admin"], summary="Set a key's budget")
    async def set_key_budget(key_id: str, budget: ScopeBudget, _: AdminDep) -> ScopeBudget:
        return await admin().set_key_budget(key_id, budget)

    @r.get("/admin/keys/{key_id}/budget", response_model=ScopeBudget, tags=["admin"], summary="A key's budget")
    async def get_key_budget(key_id: str, _: AdminDep) -> ScopeBudget:
        return await admin().key_budget(key_id)

    @r.get("/admin/keys/{key_id}/spend", response_model=list[TenantSpend], tags=["admin"], summary="A key's spend")
    async def key_spend(key_id: str, _: AdminDep) -> list[TenantSpend]:
        await admin().key_budget(key_id)
        return await admin().spend(key_scope(key_id))

    @r.get("/spend", response_model=MySpend, tags=["runs"], summary="What the caller's tenant and key have spent")
    async def my_spend(caller: CallerDep) -> MySpend:
        a = admin()
        key = caller.key_id if caller.key_id and caller.key_id != "admin_key" else None
        return MySpend(
            tenant=await a.spend(tenant_scope(caller.tenant)), key=await a.spend(key_scope(key)) if key else None
        )

    return r
