"""Architecture search (Archon's ITAS): find a good ensemble for a task from a small dev set.

``architecture_search`` asks the ``Proposer`` for a point of the ``SearchSpace``, turns it into an
ensemble config and runs it on every dev example through the ensemble executor, so every call is
metered by the ledger (scope ``<meter scope>/search/c<i>``). Each answer is scored (``scorer``:
exact match, a Python checker, or an LLM judge whose calls count too); quality is the mean score,
cost what the ledger committed for the candidate. Every candidate sees the same per-example seeds
(common random numbers), so differences between candidates are the architecture's.

With a step runner (``ctx.step``) each evaluation is one durable step ``search/cand/<i>``: a resumed
run replays the candidates it committed and evaluates only the rest; a committed candidate that
differs from this search's proposal (the dev set, space, scorer or seed changed) is an error. The
search stops after ``max_candidates``, when the space is exhausted, or when the budget refuses a
call (``BudgetExhausted``): then the candidate being evaluated is discarded (its calls count) and
the report gives the best so far and the Pareto front of quality against cost. A candidate whose
samples the executor had to shrink to fit the budget is discarded the same way, since it was not
the architecture asked for.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from conclave.core.context import Emitter, Metered
from conclave.core.ledger import BudgetExhausted
from conclave.core.steering import is_outer_scope
from conclave.schema import Usage

from ..components import stable_seed
from ..coverage import StepFn
from ..executor import EnsembleError, EnsembleResult, Executor, ModelResolver
from ..scoring import Checker, Problem, recording
from .proposer import Proposer
from .results import (
    CandidateResult,
    CostMetric,
    FrontPoint,
    Method,
    SearchReport,
    Stop,
    best_of,
    cost_of,
    pareto_front,
    resolve_metric,
)
from .scorer import Scorer, ScorerSpec, scorer_of
from .space import Arch, SearchSpace

__all__ = ["architecture_search"]

log = logging.getLogger(__name__)


def _shrunk(result: EnsembleResult) -> bool:
    return any(c.samples < c.samples_planned for layer in result.layers for c in layer.components)


async def architecture_search(
    dev_set: Sequence[Problem | Mapping[str, Any]],
    space: SearchSpace | Mapping[str, Any],
    meter: Metered,
    *,
    scorer: ScorerSpec | Mapping[str, Any] | str | Checker = "exact",
    method: Method = "bayes",
    max_candidates: int = 20,
    n_random: int = 6,
    seed: int = 0,
    cost_metric: CostMetric = "auto",
    cost_weight: float = 0.0,
    concurrency: int = 4,
    max_parse_retries: int = 2,
    resolver: ModelResolver | None = None,
    step: StepFn | None = None,
    emit: Emitter | None = None,
    check_cancel: Callable[[], None] | None = None,
) -> SearchReport:
    """Search architectures on ``dev_set`` (see the module). ``scorer``: ``"exact"``, a
    ``ScorerSpec`` (or its dict), a registered checker's name, or a callable
    ``(response, problem) -> bool | float``. ``step``: a durable step runner (``ctx.step``);
    ``emit``: an event sink (one ``log`` event per candidate)."""
    problems = [p if isinstance(p, Problem) else Problem.model_validate(p) for p in dev_set]
    if not problems:
        raise ValueError("architecture search needs a dev set of at least one example")
    sp = space if isinstance(space, SearchSpace) else SearchSpace.model_validate(space)
    if max_candidates < 1:
        raise ValueError(f"max_candidates must be at least 1, got {max_candidates}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    resolver = resolver or ModelResolver(served=meter.router.models())
    for name in [*sp.generators, *(sp.judges or [])]:
        resolver.resolve(name, "space: ")  # an unserved model fails before any call
    scoring = scorer_of(scorer, resolver, problems)

    proposer = Proposer(sp, seed, method, n_random, cost_weight, len(problems))
    done: list[CandidateResult] = []
    stop: Stop = "completed"
    detail: str | None = None
    evaluate = functools.partial(
        _evaluate,
        problems=problems,
        space=sp,
        meter=meter,
        scoring=scoring,
        resolver=resolver,
        seed=seed,
        concurrency=concurrency,
        max_parse_retries=max_parse_retries,
        emit=emit,
    )

    for i in range(max_candidates):
        if check_cancel is not None:
            check_cancel()
        arch, how = proposer.propose(done, resolve_metric(done, cost_metric))
        if arch is None:
            stop, detail = "space_exhausted", f"all {len(done)} distinct architectures of the space were evaluated"
            break
        key = f"search/cand/{i}"
        try:
            body = functools.partial(evaluate, i, arch, how)
            raw = await (step(key, body) if step else body())
        except BudgetExhausted as e:
            if is_outer_scope(e.scope):
                raise  # the tenant's (or key's) budget: the runner pauses the search, it continues later
            stop, detail = "budget_exhausted", f"candidate {i} ({arch.label()}) not completed: {e}"
            log.info("architecture search stopped: %s", detail)
            break
        got = CandidateResult.model_validate(raw)
        if got.arch != arch:
            raise EnsembleError(
                f"{key} was committed for {got.label!r} but this search proposes {arch.label()!r}: "
                "the dev set, space, scorer or seed changed since the run started"
            )
        done.append(got)

    report = _report(
        done, sp, method=method, seed=seed, dev_size=len(problems), cost_metric=cost_metric, stop=stop, detail=detail
    )
    if emit is not None:
        await emit(
            "log",
            {
                "kind": "ensemble.search.done",
                "stop": stop,
                "candidates": len(done),
                "best": report.best.index if report.best else None,
                "front": [f.index for f in report.front],
            },
        )
    return report


async def _evaluate(
    i: int,
    arch: Arch,
    how: Method,
    *,
    problems: list[Problem],
    space: SearchSpace,
    meter: Metered,
    scoring: Scorer,
    resolver: ModelResolver,
    seed: int,
    concurrency: int,
    max_parse_retries: int,
    emit: Emitter | None,
) -> dict[str, Any]:
    """Run candidate ``i`` on every dev example and score it; its JSON is the step's value."""
    spend = Usage()
    scoped = recording(meter.child(f"search/c{i}", stage="search", agent=f"cand{i}"), spend)
    config = arch.config(space, name=f"search-c{i}")
    gate = asyncio.Semaphore(concurrency)

    async def example(j: int, problem: Problem) -> tuple[float, bool]:
        async with gate:
            ex_seed = stable_seed(seed, "example", j)  # common random numbers across candidates
            res = await Executor(
                config,
                problem.messages(),
                scoped,
                resolver=resolver,
                seed=ex_seed,
                max_parse_retries=max_parse_retries,
            ).run()
            if res.stop != "completed" or _shrunk(res):
                raise BudgetExhausted(scoped.scope, "model_calls", 0)
            return await scoring.score(scoped, problem, res.output, ex_seed)

    outcomes = await asyncio.gather(*(example(j, p) for j, p in enumerate(problems)), return_exceptions=True)
    scored: list[tuple[float, bool]] = []
    for o in outcomes:
        if isinstance(o, BaseException):
            raise o
        scored.append(o)
    scores = [s for s, _ in scored]
    result = CandidateResult(
        index=i,
        method=how,
        arch=arch,
        label=arch.label(),
        quality=sum(scores) / len(scores),
        scores=scores,
        unjudged=sum(u for _, u in scored),
        spend=spend,
    )
    if emit is not None:
        await emit(
            "log",
            {
                "kind": "ensemble.search.candidate",
                "candidate": i,
                "method": how,
                "arch": arch.model_dump(),
                "label": result.label,
                "quality": result.quality,
                "usd": spend.usd,
                "tokens": spend.tokens,
                "model_calls": spend.model_calls,
            },
        )
    return result.model_dump(mode="json")


def _report(
    done: list[CandidateResult],
    space: SearchSpace,
    *,
    method: Method,
    seed: int,
    dev_size: int,
    cost_metric: CostMetric,
    stop: Stop,
    detail: str | None,
) -> SearchReport:
    """The best, the Pareto front and the total spend of the evaluated candidates."""
    metric = resolve_metric(done, cost_metric)
    best = best_of(done, metric)
    front_ids = pareto_front([(c.index, c.quality, cost_of(c.spend, metric)) for c in done])
    by_index = {c.index: c for c in done}
    total = Usage()
    for c in done:
        total += c.spend
    return SearchReport(
        method=method,
        seed=seed,
        dev_size=dev_size,
        cost_metric=metric,
        candidates=done,
        best=best,
        best_config=best.arch.config(space, name="searched-best").model_dump(exclude_defaults=True) if best else None,
        front=[
            FrontPoint(
                index=k, label=by_index[k].label, quality=by_index[k].quality, cost=cost_of(by_index[k].spend, metric)
            )
            for k in front_ids
        ],
        spend=total,
        stop=stop,
        detail=detail,
    )
