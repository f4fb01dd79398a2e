"""Budgets, usage, prices and cost: what a run may spend and what it did spend.

Usage counts come from the engines (never estimated from string lengths); money is reported in USD and
counted by the ledger in integer pico-dollars so that sums are exact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from conclave.schema.base import StrictModel
from conclave.schema.money import MAX_USD, from_pico

__all__ = [
    "BUDGET_LIMITS",
    "Budget",
    "Cost",
    "CostLine",
    "LimitName",
    "LimitStatus",
    "Price",
    "SubBudget",
    "Usage",
]

LimitName = Literal["usd", "input_tokens", "output_tokens", "model_calls", "tool_calls", "wall_seconds"]
"""The limits a budget may set. ``tool_calls`` is per tool (``tool_calls.<name>``, ``*`` for all tools
together); ``wall_seconds`` is wall-clock time of running, counted on the store's clock."""

BUDGET_LIMITS: tuple[LimitName, ...] = (
    "usd",
    "input_tokens",
    "output_tokens",
    "model_calls",
    "tool_calls",
    "wall_seconds",
)


class Price(StrictModel):
    """USD per million tokens. ``cached_input`` defaults to ``input`` when not given."""

    input: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    output: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    cached_input: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    @property
    def cached(self) -> float:
        return self.input if self.cached_input is None else self.cached_input


NonNegInt = Annotated[int, Field(ge=0)]

#: Pico-dollars in a dollar: the ledger counts money in integers so that sums are exact.


def _finite_non_negative(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


class _Limits(StrictModel):
    """The limits shared by a run budget and its scopes."""

    usd: float | None = Field(default=None, le=MAX_USD, description="Cost cap in US dollars.")
    input_tokens: NonNegInt | None = None
    output_tokens: NonNegInt | None = None
    model_calls: NonNegInt | None = None
    tool_calls: dict[str, NonNegInt] | None = Field(
        default=None, description="Calls per tool name; '*' caps all tools together."
    )
    wall_seconds: float | None = Field(default=None, description="Wall-clock seconds of running.")
    scopes: dict[str, SubBudget] = Field(default_factory=dict, description="Stages or agents.")

    @field_validator("usd", "wall_seconds")
    @classmethod
    def _finite(cls, v: float | None, info: Any) -> float | None:
        return _finite_non_negative(info.field_name, v)

    @model_validator(mode="after")
    def _scopes_fit(self) -> Any:
        _check_children(self)
        return self

    def is_empty(self) -> bool:
        return all(getattr(self, k) is None for k in BUDGET_LIMITS) and not self.scopes


class SubBudget(_Limits):
    """A scope inside a budget (a stage or an agent): a share of the parent, or explicit limits.

    ``share`` is a fraction of every limit of the parent (0.7 = 70 %). Explicit limits may be given
    instead of, or beside, a share; they must not exceed the parent's.
    """

    share: float | None = Field(default=None, gt=0, le=1, description="Fraction of the parent budget.")


class Budget(_Limits):
    """Limits for a whole run; any combination, all optional.

    ``scopes`` splits the run into stages or agents (e.g. ``{"gather": {"share": 0.7}, "write":
    {"share": 0.3}}``); shares of siblings must not sum past 1.
    """

    currency: Literal["USD"] = Field(default="USD", description="Only USD is priced.")


def _check_children(parent: _Limits) -> None:
    shares = [s.share for s in parent.scopes.values() if s.share is not None]
    if sum(shares) > 1.0 + 1e-9:
        raise ValueError(f"scopes: shares sum to {sum(shares):.3f}, more than the whole parent budget (1.0)")
    for name, child in parent.scopes.items():
        for limit in ("usd", "input_tokens", "output_tokens", "model_calls", "wall_seconds"):
            mine, theirs = getattr(child, limit), getattr(parent, limit)
            if mine is not None and theirs is not None and mine > theirs:
                raise ValueError(f"scopes.{name}.{limit}: {mine} exceeds the parent's {limit} ({theirs})")
        if child.tool_calls and parent.tool_calls:
            for tool, n in child.tool_calls.items():
                cap = parent.tool_calls.get(tool)
                if cap is not None and n > cap:
                    raise ValueError(f"scopes.{name}.tool_calls.{tool}: {n} exceeds the parent's cap ({cap})")


class Usage(StrictModel):
    """Token and call counts, as the engines report them (never estimated from string lengths), and
    their price as the ledger summed it.

    The one usage record of the project: a run's total, a cost line, an ensemble layer, a search
    candidate. (``CompletionUsage`` in ``schema.chat`` is only OpenAI's wire shape of one response.)
    """

    input_tokens: NonNegInt = 0
    output_tokens: NonNegInt = 0
    cached_tokens: NonNegInt = 0
    model_calls: NonNegInt = 0
    tool_calls: dict[str, NonNegInt] = Field(default_factory=dict)
    usd_pico: NonNegInt = Field(
        default=0, description="Price in pico-dollars (1e-12 USD), exact as the ledger sums it; 0 when unpriced."
    )

    @property
    def usd(self) -> float:
        return from_pico(self.usd_pico)

    @property
    def tokens(self) -> int:
        """Input and output tokens together."""
        return self.input_tokens + self.output_tokens

    @classmethod
    def of_metrics(cls, metrics: Mapping[str, int]) -> Usage:
        """From a ledger's amounts: ``input_tokens``, ``output_tokens``, ``cached_tokens``,
        ``model_calls``, ``usd`` (pico-dollars) and ``tool:<name>`` (``tool:*``, their sum, is skipped)."""
        return cls(
            input_tokens=int(metrics.get("input_tokens", 0)),
            output_tokens=int(metrics.get("output_tokens", 0)),
            cached_tokens=int(metrics.get("cached_tokens", 0)),
            model_calls=int(metrics.get("model_calls", 0)),
            tool_calls={k[5:]: int(v) for k, v in metrics.items() if k.startswith("tool:") and k != "tool:*"},
            usd_pico=int(metrics.get("usd", 0)),
        )

    def add(self, other: Usage) -> Usage:
        """Add ``other`` into this record (in place; returns it), for running totals."""
        for name in ("input_tokens", "output_tokens", "cached_tokens", "model_calls", "usd_pico"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for k, v in other.tool_calls.items():
            self.tool_calls[k] = self.tool_calls.get(k, 0) + v
        return self

    def __add__(self, other: Usage) -> Usage:
        return self.model_copy(deep=True).add(other)

    def __iadd__(self, other: Usage) -> Usage:
        return self.add(other)


class CostLine(StrictModel):
    """Usage plus its price and time, for one slice of a run (a model, a tool, a stage, an agent)."""

    usage: Usage = Field(default_factory=Usage)
    usd: float = 0.0
    seconds: float = 0.0


class LimitStatus(StrictModel):
    """One budget limit in one scope: the cap, what is committed, what is reserved, what is left."""

    scope: str
    limit: str
    cap: float
    used: float
    reserved: float
    left: float
    exhausted: bool


class Cost(StrictModel):
    """A run's cost breakdown. ``usd`` is the unified cost: token cost plus priced tool calls."""

    total: CostLine = Field(default_factory=CostLine)
    by_model: dict[str, CostLine] = Field(default_factory=dict)
    by_tool: dict[str, CostLine] = Field(default_factory=dict)
    by_stage: dict[str, CostLine] = Field(default_factory=dict)
    by_agent: dict[str, CostLine] = Field(default_factory=dict)
    limits: list[LimitStatus] = Field(default_factory=list)
    exhausted_limit: str | None = None
