"""What a search records and reports: evaluated candidates, their cost, the best and the Pareto front.

Cost is what the ledger committed for a candidate (judge calls included), measured in USD, tokens,
output tokens or model calls (``cost_metric``; ``auto`` = USD when any call was priced, else
tokens). Best = highest quality, then lowest cost, then first evaluated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from conclave.schema import Usage

from .space import Arch

__all__ = [
    "CandidateResult",
    "CostMetric",
    "FrontPoint",
    "Method",
    "Metric",
    "SearchReport",
    "Stop",
    "best_of",
    "cost_of",
    "pareto_front",
    "resolve_metric",
]

Method = Literal["random", "bayes"]
"""``random``: uniform draws throughout; ``bayes``: uniform first, then a Gaussian process (``proposer``)."""

Metric = Literal["usd", "tokens", "output_tokens", "model_calls"]
"""What a candidate's cost is measured in."""

CostMetric = Literal["auto", "usd", "tokens", "output_tokens", "model_calls"]
"""A ``Metric``, or ``auto``: USD when any call was priced, else tokens."""

Stop = Literal["completed", "space_exhausted", "budget_exhausted"]
"""Why the search ended: ``max_candidates`` reached, every point tried, or the budget refused a call."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CandidateResult(_Strict):
    """One evaluated candidate (the value of step ``search/cand/<i>``)."""

    index: int
    method: Method
    arch: Arch
    label: str
    quality: float
    scores: list[float]
    unjudged: int = Field(default=0, description="Judge verdicts that stayed unreadable (scored 0).")
    spend: Usage


class FrontPoint(_Strict):
    index: int
    label: str
    quality: float
    cost: float


class SearchReport(_Strict):
    method: Method
    seed: int
    dev_size: int
    cost_metric: Metric
    candidates: list[CandidateResult]
    best: CandidateResult | None
    best_config: dict[str, Any] | None = Field(description="The best candidate as an ensemble config.")
    front: list[FrontPoint] = Field(description="Pareto front: no other candidate is as good and cheaper.")
    spend: Usage = Field(description="Committed by the evaluations reported (not a discarded one).")
    stop: Stop
    detail: str | None = None


def cost_of(spend: Usage, metric: str) -> float:
    """``spend`` measured in ``metric``."""
    if metric == "usd":
        return spend.usd
    if metric == "tokens":
        return float(spend.tokens)
    if metric == "output_tokens":
        return float(spend.output_tokens)
    return float(spend.model_calls)


def resolve_metric(candidates: Sequence[CandidateResult], metric: CostMetric) -> Metric:
    """``metric``, with ``auto`` decided by whether any candidate's calls were priced."""
    if metric != "auto":
        return metric
    return "usd" if any(c.spend.usd_pico > 0 for c in candidates) else "tokens"


def pareto_front(points: Sequence[tuple[int, float, float]]) -> list[int]:
    """Indices of (index, quality, cost) points no other point dominates (quality at least as high
    and cost at most as high, one of them strictly), by cost ascending; equal points keep the first."""
    front: list[int] = []
    for i, q, c in points:
        dominated = any(
            (q2 >= q and c2 <= c and (q2 > q or c2 < c)) or (q2 == q and c2 == c and j < i) for j, q2, c2 in points
        )
        if not dominated:
            front.append(i)
    by = {i: (c, -q) for i, q, c in points}
    return sorted(front, key=lambda i: by[i])


def best_of(candidates: Sequence[CandidateResult], metric: str) -> CandidateResult | None:
    """Highest quality, then lowest cost, then first evaluated; None without candidates."""
    if not candidates:
        return None
    return min(candidates, key=lambda c: (-c.quality, cost_of(c.spend, metric), c.index))
