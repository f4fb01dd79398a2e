"""Repeated sampling with a coverage report.

``repeated_sampling`` draws ``n`` samples per problem (one request with ``n`` per problem, through
the ensemble executor and so through the ``Meter``), checks every sample with the problem's checker,
and reports **coverage**: the fraction of problems that at least one of the ``n`` samples solves
(Brown et al., "Large Language Monkeys"). The curve gives, for k = 1..n, the unbiased pass@k
estimate (Chen et al., 2021: ``1 - C(n-c, k) / C(n, k)`` per problem with c correct samples,
averaged) and the fraction solved by each problem's first k samples. ``spend`` is what the ledger
committed for these calls.

A problem counts as solved when a sample's checker score is 1 (``True``). Inside a run each problem
is a durable step (``coverage/p<i>``, given a ``step`` runner): a resumed run replays the problems
it finished and samples only the others. When the budget refuses a call, the report covers the
problems finished so far and says so (``stop="budget_exhausted"``); a problem whose samples the
executor had to cut to fit the budget is listed in ``incomplete`` and left out of the figures,
which would otherwise mix different n.

The same check is available inside an ensemble as the ``checker`` component and the
``repeated_sampling`` strategy (``{"strategy": {"type": "repeated_sampling", "model": ..., "n": 8}}``).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from conclave.core.context import Emitter, Metered
from conclave.core.ledger import BudgetExhausted
from conclave.core.steering import is_outer_scope
from conclave.schema import Usage

from .components import stable_seed
from .config import ComponentSpec, EnsembleConfig, LayerSpec
from .executor import Executor, ModelResolver
from .scoring import Checker, Problem, make_checker, recording, run_checker

__all__ = [
    "CoverageReport",
    "CurvePoint",
    "ProblemResult",
    "StepFn",
    "pass_at_k",
    "repeated_sampling",
    "report_of",
    "sampling_config",
    "wilson_interval",
]

#: A durable step runner: ``step(key, fn)`` runs ``fn`` once per run and returns its JSON value.
StepFn = Callable[[str, Callable[[], Awaitable[dict[str, Any]]]], Awaitable[Any]]


class _Rec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProblemResult(_Rec):
    """The samples of one problem (the value of step ``coverage/p<i>``)."""

    index: int
    id: str | None = None
    samples: int = Field(description="Samples drawn.")
    samples_planned: int
    scores: list[float] = Field(description="Checker score of each sample, in sample order.")
    spend: Usage = Field(default_factory=Usage)

    @property
    def correct(self) -> int:
        return sum(s >= 1.0 for s in self.scores)

    @property
    def first_correct(self) -> int | None:
        """1-based index of the first sample that passed."""
        return next((k + 1 for k, s in enumerate(self.scores) if s >= 1.0), None)


class CurvePoint(_Rec):
    k: int
    pass_at_k: float = Field(description="Unbiased estimate from all n samples, mean over problems.")
    first_k: float = Field(description="Fraction of problems solved by one of their first k samples.")


class CoverageReport(_Rec):
    model: str
    n: int
    problems: int = Field(description="Problems given.")
    evaluated: int = Field(description="Problems with all n samples checked.")
    solved: int
    coverage: float = Field(description="solved / evaluated (0 when nothing was evaluated).")
    coverage_ci95: tuple[float, float] = Field(description="Wilson 95% interval of coverage.")
    curve: list[CurvePoint]
    spend: Usage
    usd: float
    results: list[ProblemResult]
    incomplete: list[int] = Field(default_factory=list, description="Problems whose samples the budget cut.")
    stop: Literal["completed", "budget_exhausted"] = "completed"
    detail: str | None = None


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that k samples drawn without replacement from n, c of them correct, hold one."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    miss = 1.0
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    if trials == 0:
        return (0.0, 1.0)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def sampling_config(model: str, n: int, *, temperature: float, max_tokens: int) -> EnsembleConfig:
    """One layer: ``n`` samples of ``model`` (one request with ``n``)."""
    gen = ComponentSpec(type="generator", model=model, samples=n, temperature=temperature, max_tokens=max_tokens)
    return EnsembleConfig(name=f"repeated-sampling-{n}", layers=[LayerSpec(components=[gen])])


def _problems(problems: Sequence[Problem | Mapping[str, Any]]) -> list[Problem]:
    return [p if isinstance(p, Problem) else Problem.model_validate(p) for p in problems]


def report_of(
    model: str,
    n: int,
    total: int,
    results: Sequence[ProblemResult],
    *,
    stop: Literal["completed", "budget_exhausted"] = "completed",
    detail: str | None = None,
) -> CoverageReport:
    """Figures over the problems that got all ``n`` samples; spend over every problem that ran."""
    spend = Usage()
    for r in results:
        spend += r.spend
    full = sorted((r for r in results if r.samples == n), key=lambda r: r.index)
    incomplete = sorted(r.index for r in results if r.samples != n)
    solved = sum(r.correct > 0 for r in full)
    m = len(full)
    curve = [
        CurvePoint(
            k=k,
            pass_at_k=sum(pass_at_k(n, r.correct, k) for r in full) / m if m else 0.0,
            first_k=sum(any(s >= 1.0 for s in r.scores[:k]) for r in full) / m if m else 0.0,
        )
        for k in range(1, n + 1)
    ]
    if incomplete and stop == "completed":
        stop = "budget_exhausted"
        detail = detail or f"the budget cut the samples of problems {incomplete}"
    return CoverageReport(
        model=model,
        n=n,
        problems=total,
        evaluated=m,
        solved=solved,
        coverage=solved / m if m else 0.0,
        coverage_ci95=wilson_interval(solved, m),
        curve=curve,
        spend=spend,
        usd=spend.usd,
        results=sorted(results, key=lambda r: r.index),
        incomplete=incomplete,
        stop=stop,
        detail=detail,
    )


async def repeated_sampling(
    problems: Sequence[Problem | Mapping[str, Any]],
    meter: Metered,
    *,
    model: str,
    n: int,
    checker: str | Checker | None = None,
    answer_pattern: str | None = None,
    temperature: float = 0.8,
    max_tokens: int = 1024,
    seed: int = 0,
    concurrency: int = 4,
    resolver: ModelResolver | None = None,
    step: StepFn | None = None,
    emit: Emitter | None = None,
) -> CoverageReport:
    """Draw ``n`` samples for every problem, check them, and report coverage (see the module).

    ``checker``: ``None``/``"exact"`` (exact match with ``expected`` after answer extraction;
    ``answer_pattern`` picks the answer out of a response), a registered checker's name, or a
    callable ``(response, problem) -> bool | float``. Every call goes through ``meter`` (scope
    ``<meter scope>/coverage/p<i>``). Problems run ``concurrency`` at a time; with a ``step``
    runner each is a durable step ``coverage/p<i>``. Seeded: the same ``seed`` draws the same
    samples. ``BudgetExhausted`` ends the sampling; the report covers what finished.
    """
    if not 1 <= n <= 100_000:
        raise ValueError(f"n must be between 1 and 100000, got {n}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    items = _problems(problems)
    if not items:
        raise ValueError("repeated sampling needs at least one problem")
    check = make_checker(checker, answer_pattern)
    config = sampling_config(model, n, temperature=temperature, max_tokens=max_tokens)
    resolver = resolver or ModelResolver(served=meter.router.models())
    resolver.resolve(model, "model: ")  # an unserved model fails before any call
    gate = asyncio.Semaphore(concurrency)
    stopped: list[BudgetExhausted] = []
    results: list[ProblemResult] = []

    async def sample(i: int, problem: Problem) -> dict[str, Any]:
        spend = Usage()
        scoped = recording(meter.child(f"coverage/p{i}", stage="coverage", agent=f"p{i}"), spend)
        res = await Executor(config, problem.messages(), scoped, resolver=resolver, seed=stable_seed(seed, i)).run()
        if res.stop != "completed":  # pragma: no cover - one layer either completes or raises
            raise BudgetExhausted(scoped.scope, "model_calls", 0)
        comp = res.layers[0].components[0]
        scores = [run_checker(check, c.text, problem) for c in res.candidates]
        out = ProblemResult(
            index=i,
            id=problem.id,
            samples=comp.samples,
            samples_planned=comp.samples_planned,
            scores=scores,
            spend=spend,
        )
        if emit is not None:
            await emit(
                "log",
                {
                    "kind": "ensemble.coverage.problem",
                    "problem": i,
                    "id": problem.id,
                    "samples": out.samples,
                    "correct": out.correct,
                    "first_correct": out.first_correct,
                    "usd": spend.usd,
                    "output_tokens": spend.output_tokens,
                },
            )
        return out.model_dump(mode="json")

    async def one(i: int, problem: Problem) -> None:
        async with gate:
            if stopped:
                return
            try:
                raw = await (step(f"coverage/p{i}", lambda: sample(i, problem)) if step else sample(i, problem))
            except BudgetExhausted as e:
                if is_outer_scope(e.scope):
                    raise  # the tenant's (or key's) budget: the runner pauses the run, it continues later
                stopped.append(e)
                return
            results.append(ProblemResult.model_validate(raw))

    # Wait for every problem, even when one fails, so every started call commits; then raise.
    for outcome in await asyncio.gather(*(one(i, p) for i, p in enumerate(items)), return_exceptions=True):
        if isinstance(outcome, BaseException):
            raise outcome
    if stopped:
        return report_of(
            model,
            n,
            len(items),
            results,
            stop="budget_exhausted",
            detail=f"after {len(results)} problems: {stopped[0]}",
        )
    return report_of(model, n, len(items), results)
