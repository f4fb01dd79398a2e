"""HTTP wiring of tenant and key budgets (admin) and of a caller's own spend."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import Field

from conclave.controller.errors import InvalidInput
from conclave.controller.tenants import TenantAdmin
from conclave.core.store_tenants import key_scope, tenant_scope
from conclave.schema import ScopeBudget, StrictModel, TenantSpend

from .auth import Caller, admin_dependency, caller_dependency

__all__ = ["MySpend", "PurgeRequest", "PurgeResult", "RetentionInForce", "RetentionPolicy", "tenants_router"]


class RetentionPolicy(StrictModel):
    """Days a finished run of the tenant is kept (null: the deployment's default applies)."""

    days: float | None = Field(default=None, ge=0)


class RetentionInForce(StrictModel):
    tenant: str
    days: float | None = Field(description="Days finished runs are kept; null: for ever.")


class PurgeRequest(StrictModel):
    """Without ``older_than_days``: delete what the retention policy says is due. With it: delete the
    tenant's runs that ended more than that many days ago."""

    tenant: str | None = Field(default=None, min_length=1, max_length=64)
    older_than_days: float | None = Field(default=None, ge=0)


class PurgeResult(StrictModel):
    purged: int


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

    @r.put(
        "/admin/tenants/{tenant}/retention",
        response_model=RetentionInForce,
        tags=["admin"],
        summary="Set a tenant's retention",
    )
    async def set_retention(tenant: str, policy: RetentionPolicy, _: AdminDep) -> RetentionInForce:
        store = services.service.store
        await store.set_retention(tenant, None if policy.days is None else policy.days * 86400)
        return await _retention(tenant)

    @r.get(
        "/admin/tenants/{tenant}/retention",
        response_model=RetentionInForce,
        tags=["admin"],
        summary="A tenant's retention",
    )
    async def get_retention(tenant: str, _: AdminDep) -> RetentionInForce:
        return await _retention(tenant)

    async def _retention(tenant: str) -> RetentionInForce:
        secs = await services.service.store.get_retention(tenant)
        return RetentionInForce(tenant=tenant, days=None if secs is None else secs / 86400)

    @r.post("/admin/runs/purge", response_model=PurgeResult, tags=["admin"], summary="Delete finished runs")
    async def purge(body: PurgeRequest, _: AdminDep) -> PurgeResult:
        store = services.service.store
        if body.older_than_days is None:
            total = 0
            while (n := await store.purge_expired(500)) > 0:
                total += n
            return PurgeResult(purged=total)
        if body.tenant is None:
            raise InvalidInput("invalid_request", "older_than_days needs a tenant", field="tenant")
        return PurgeResult(purged=await store.purge_finished(body.tenant, body.older_than_days * 86400))

    @r.get("/spend", response_model=MySpend, tags=["runs"], summary="What the caller's tenant and key have spent")
    async def my_spend(caller: CallerDep) -> MySpend:
        a = admin()
        key = caller.key_id if caller.key_id and caller.key_id != "admin_key" else None
        return MySpend(
            tenant=await a.spend(tenant_scope(caller.tenant)), key=await a.spend(key_scope(key)) if key else None
        )

    return r
