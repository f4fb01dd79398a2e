"""``client.tenants``: tenant and key budgets, spend, retention and purges (admin routes, except ``mine``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conclave.schema import (
    MySpend,
    PurgeRequest,
    PurgeResult,
    RetentionInForce,
    RetentionPolicy,
    ScopeBudget,
    TenantSpend,
)

from ..request import Call, model, model_list, path
from ..resource import Resource, TransportT, endpoint

__all__ = ["Tenants"]


def _budget(budget: ScopeBudget | Mapping[str, Any]) -> dict[str, Any]:
    b = budget if isinstance(budget, ScopeBudget) else ScopeBudget.model_validate(dict(budget))
    return b.model_dump(mode="json", exclude_none=True)


def set_budget(tenant: str, budget: ScopeBudget | Mapping[str, Any]) -> Call[ScopeBudget]:
    """Replace ``tenant``'s budget: caps per period (``{"periods": {"daily": {"usd": 5}}}``) on all its
    runs and OpenAI-endpoint calls together; an empty budget removes every cap."""
    return Call("PUT", path("/v1/admin/tenants/{}/budget", tenant), model(ScopeBudget), json=_budget(budget))


def budget(tenant: str) -> Call[ScopeBudget]:
    return Call("GET", path("/v1/admin/tenants/{}/budget", tenant), model(ScopeBudget))


def spend(tenant: str) -> Call[list[TenantSpend]]:
    """What ``tenant`` spent in the current day, month and in all, with its caps and what is left."""
    return Call("GET", path("/v1/admin/tenants/{}/spend", tenant), model_list(TenantSpend))


def set_key_budget(key_id: str, budget: ScopeBudget | Mapping[str, Any]) -> Call[ScopeBudget]:
    """Replace one API key's budget (binds the runs and calls made with that key)."""
    return Call("PUT", path("/v1/admin/keys/{}/budget", key_id), model(ScopeBudget), json=_budget(budget))


def key_budget(key_id: str) -> Call[ScopeBudget]:
    return Call("GET", path("/v1/admin/keys/{}/budget", key_id), model(ScopeBudget))


def key_spend(key_id: str) -> Call[list[TenantSpend]]:
    return Call("GET", path("/v1/admin/keys/{}/spend", key_id), model_list(TenantSpend))


def mine() -> Call[MySpend]:
    """The caller's own spend: its tenant's, and its key's (no admin key needed)."""
    return Call("GET", "/v1/spend", model(MySpend))


def set_retention(tenant: str, days: float | None) -> Call[RetentionInForce]:
    """Keep ``tenant``'s finished runs ``days`` days (``None``: the deployment's default applies)."""
    body = RetentionPolicy(days=days).model_dump(mode="json")
    return Call("PUT", path("/v1/admin/tenants/{}/retention", tenant), model(RetentionInForce), json=body)


def retention(tenant: str) -> Call[RetentionInForce]:
    return Call("GET", path("/v1/admin/tenants/{}/retention", tenant), model(RetentionInForce))


def purge(tenant: str | None = None, *, older_than_days: float | None = None) -> Call[PurgeResult]:
    """Delete finished runs: those the retention policy says are due, or ``tenant``'s that ended more than
    ``older_than_days`` ago."""
    body = PurgeRequest(tenant=tenant, older_than_days=older_than_days).model_dump(mode="json")
    return Call("POST", "/v1/admin/runs/purge", model(PurgeResult), json=body)


class Tenants(Resource[TransportT]):
    """Tenant and key budgets, spend, retention."""

    set_budget = endpoint(set_budget)
    budget = endpoint(budget)
    spend = endpoint(spend)
    set_key_budget = endpoint(set_key_budget)
    key_budget = endpoint(key_budget)
    key_spend = endpoint(key_spend)
    mine = endpoint(mine)
    set_retention = endpoint(set_retention)
    retention = endpoint(retention)
    purge = endpoint(purge)
