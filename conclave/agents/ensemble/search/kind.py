"""The ``ensemble_search`` run kind: an architecture search as a run, each candidate one durable step.

``spec.options`` is a ``SearchOptions``; the result is the ``SearchReport``, the output one line
naming the best candidate. A search the budget stopped ends ``budget_exhausted`` with its best so far.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from conclave.core.context import RunContext
from conclave.core.kinds import Outcome, RunKind
from conclave.schema import RunStatus, StopReason, TaskSpec

from ..executor import ModelResolver
from ..scoring import CheckerError, Problem, make_checker
from .driver import architecture_search
from .results import CostMetric, Method, cost_of
from .scorer import ScorerSpec
from .space import SearchSpace

__all__ = ["KIND", "SearchOptions"]


class SearchOptions(BaseModel):
    """Options of an ``ensemble_search`` run (``spec.options``); the task's ``input`` describes it."""

    model_config = ConfigDict(extra="forbid")

    dev_set: list[Problem] = Field(min_length=1, max_length=10_000, description="Examples: input, expected, ...")
    space: SearchSpace
    scorer: ScorerSpec | str = Field(default="exact", description="'exact', a registered checker, or a ScorerSpec.")
    method: Method = "bayes"
    max_candidates: int = Field(default=20, ge=1, le=10_000)
    n_random: int = Field(default=6, ge=0, le=10_000, description="Random candidates before the Bayesian ones.")
    seed: int = 0
    cost_metric: CostMetric = "auto"
    cost_weight: float = Field(default=0.0, ge=0, le=100, description="Cost penalty in the Bayesian objective.")
    concurrency: int = Field(default=4, ge=1, le=256, description="Dev examples evaluated at once.")
    max_parse_retries: int = Field(default=2, ge=0, le=10)
    model_map: dict[str, str] = Field(default_factory=dict, description="Names in the space → served models.")
    default_model: str | None = None


def _check(spec: TaskSpec) -> None:
    opts = SearchOptions.model_validate(spec.options)
    if isinstance(opts.scorer, str):
        try:
            make_checker(opts.scorer)
        except CheckerError as e:
            raise ValueError(f"options.scorer: {e}") from None


async def run(ctx: RunContext) -> Outcome:
    opts = SearchOptions.model_validate(ctx.spec.options)
    resolver = ModelResolver(served=ctx.router.models(), model_map=opts.model_map, default_model=opts.default_model)

    async def step(key: str, fn: Callable[[], Awaitable[dict[str, Any]]]) -> Any:
        return await ctx.step(key, fn)

    report = await architecture_search(
        opts.dev_set,
        opts.space,
        ctx.meter,
        scorer=opts.scorer,
        method=opts.method,
        max_candidates=opts.max_candidates,
        n_random=opts.n_random,
        seed=opts.seed,
        cost_metric=opts.cost_metric,
        cost_weight=opts.cost_weight,
        concurrency=opts.concurrency,
        max_parse_retries=opts.max_parse_retries,
        resolver=resolver,
        step=step,
        emit=ctx.emit,
        check_cancel=ctx.check_cancel,
    )
    best = report.best
    output = (
        f"best of {len(report.candidates)} candidates: {best.label} (quality {best.quality:.3f}, "
        f"{report.cost_metric} {cost_of(best.spend, report.cost_metric):g})"
        if best
        else "no candidate was evaluated"
    )
    if best is not None:
        ctx.partial_output = output
    result = report.model_dump(mode="json")
    if report.stop == "budget_exhausted":
        return Outcome(
            output=output,
            result=result,
            status=RunStatus.BUDGET_EXHAUSTED,
            stop_reason=StopReason.BUDGET_EXHAUSTED,
            detail=report.detail,
        )
    return Outcome(output=output, result=result)


KIND = RunKind(
    name="ensemble_search",
    run=run,
    options=SearchOptions,
    description="Archon-style architecture search: ensembles evaluated on a dev set, quality against cost.",
    check=_check,
)
