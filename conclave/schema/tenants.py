"""Tenant and key budgets, and what a tenant has spent per period.

A budget above the run: a tenant (or one of its API keys) may spend at most so many USD, tokens or model
calls per period, across all of its runs and its calls on the OpenAI-compatible endpoint together. The
ledger enforces it with the same atomic reservations as a run's own budget, on Redis's clock. Periods are
calendar periods in UTC: ``daily`` (a day), ``monthly`` (a month) and ``none`` (for ever).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from conclave.schema.base import StrictModel
from conclave.schema.money import MAX_USD

__all__ = [
    "BudgetLimits",
    "MySpend",
    "PERIODS",
    "Period",
    "PurgeRequest",
    "PurgeResult",
    "RetentionInForce",
    "RetentionPolicy",
    "ScopeBudget",
    "SpendLine",
    "TenantSpend",
]

Period = Literal["daily", "monthly", "none"]
"""A budget's period: ``daily`` and ``monthly`` restart at 00:00 UTC of each day / month; ``none`` never does."""

PERIODS: tuple[Period, ...] = ("daily", "monthly", "none")


class BudgetLimits(StrictModel):
    """Caps for one period; any combination, all optional (an unset limit is not capped)."""

    usd: float | None = Field(default=None, ge=0, le=MAX_USD, allow_inf_nan=False)
    input_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)
    model_calls: int | None = Field(default=None, ge=0)

    def is_empty(self) -> bool:
        return all(getattr(self, k) is None for k in type(self).model_fields)


class ScopeBudget(StrictModel):
    """The budget of a tenant or a key: caps per period (``{"daily": {...}, "monthly": {...}}``)."""

    periods: dict[Period, BudgetLimits] = Field(default_factory=dict)

    @field_validator("periods")
    @classmethod
    def _drop_empty(cls, v: dict[Period, BudgetLimits]) -> dict[Period, BudgetLimits]:
        return {p: lim for p, lim in v.items() if not lim.is_empty()}


class SpendLine(StrictModel):
    """One limit in one period: the cap (if any), what is committed, held by calls in flight, left, and
    usage reported above the room a cap had (``over``: recorded, never counted against the cap twice)."""

    limit: str
    cap: float | None
    used: float
    reserved: float
    left: float | None
    over: float = 0.0


class TenantSpend(StrictModel):
    """What a scope (``tenant/<t>`` or ``key/<k>``) has spent in one period."""

    scope: str
    period: Period
    period_id: str = Field(description="YYYY-MM-DD (daily), YYYY-MM (monthly) or 'all'.")
    starts_at: float | None = Field(default=None, description="Unix time the period began (UTC).")
    ends_at: float | None = Field(default=None, description="Unix time the period ends (UTC).")
    lines: list[SpendLine]
    by_model: dict[str, dict[str, float]] = Field(default_factory=dict)


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
