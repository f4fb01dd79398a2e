"""Repeated sampling with a coverage report, on simulated engines whose per-sample correctness is
known, metered by a real ledger on Valkey (runs submitted and claimed through the store)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from conclave.agents.ensemble import (
    EnsembleError,
    Executor,
    Problem,
    parse_config,
    pass_at_k,
    register_checker,
    repeated_sampling,
)
from conclave.agents.ensemble.kind import KIND as ENSEMBLE_KIND
from conclave.budgets.cost import ledger_cost
from conclave.budgets.pricing import Pricing
from conclave.cluster.engines.sim import SimEngine
from conclave.cluster.router import LocalRouter
from conclave.schema import Budget, RunStatus, TaskSpec
from conclave.schema.budget import Price

from ._runs import Runs

pytestmark = pytest.mark.redis

PRICING = Pricing({"g": Price(input=1.0, output=4.0)})


def sampler(p: float, **opts: Any) -> SimEngine:
    """Each sample independently says 42 (correct) with probability p."""
    return SimEngine(
        {
            "mode": "sample",
            "replies": [{"content": "so 42", "weight": p}, {"content": "so 17", "weight": 1 - p}],
            **opts,
        }
    )


def problems(m: int) -> list[Problem]:
    return [Problem(input=f"Question {i}: what is six times seven?", expected="42", id=f"q{i}") for i in range(m)]


def _ci99(p: float, n: int) -> float:
    return 2.576 * math.sqrt(p * (1 - p) / n)


def test_pass_at_k_estimator() -> None:
    assert pass_at_k(8, 0, 3) == 0.0 and pass_at_k(8, 8, 1) == 1.0 and pass_at_k(8, 6, 3) == 1.0
    assert pass_at_k(5, 1, 1) == pytest.approx(0.2)
    assert pass_at_k(4, 2, 2) == pytest.approx(1 - 1 / 6)  # 1 - C(2,2)/C(4,2)
    with pytest.raises(ValueError, match="pass@k"):
        pass_at_k(3, 4, 1)


async def test_coverage_matches_one_minus_one_minus_p_to_the_k(runs: Runs) -> None:
    p, n, m = 0.2, 8, 160
    router = LocalRouter({"g": sampler(p)})
    _, ctx = await runs.start(TaskSpec(kind="chat", input="coverage"), router, pricing=PRICING)
    report = await repeated_sampling(problems(m), ctx.meter, model="g", n=n, seed=11, concurrency=8)
    assert report.evaluated == m and report.stop == "completed" and not report.incomplete
    assert [c.k for c in report.curve] == list(range(1, n + 1))
    for point in report.curve:
        predicted = 1 - (1 - p) ** point.k
        assert abs(point.first_k - predicted) <= _ci99(predicted, m), (point, predicted)
        assert abs(point.pass_at_k - predicted) <= _ci99(predicted, m), (point, predicted)
    assert report.coverage == report.curve[-1].first_k == report.solved / m
    lo, hi = report.coverage_ci95
    assert lo <= report.coverage <= hi
    # Cost is the ledger's: one request with n=8 per problem, priced.
    cost = await ledger_cost(ctx.ledger)
    assert report.spend.model_calls == cost.total.usage.model_calls == m
    assert report.spend.output_tokens == cost.total.usage.output_tokens == m * n * 2
    assert report.usd == pytest.approx(cost.total.usd) and report.usd > 0
    assert report.results[0].spend.model_calls == 1
    # Seeded: the same seed draws the same samples.
    again = await repeated_sampling(problems(m), ctx.meter, model="g", n=n, seed=11, concurrency=3)
    assert [r.scores for r in again.results] == [r.scores for r in report.results]


async def test_python_checker_and_durable_steps_resume(runs: Runs) -> None:
    engine = sampler(0.5)
    router = LocalRouter({"g": engine})
    rid, ctx = await runs.start(TaskSpec(kind="chat", input="coverage"), router)
    seen: list[str] = []

    def check(response: str, problem: Problem) -> bool:
        seen.append(problem.data["tag"])
        return response.endswith(problem.data["want"])

    items = [Problem(input=f"q{i}?", data={"tag": f"t{i}", "want": "42"}) for i in range(6)]

    async def step(key: str, fn: Any) -> Any:
        return await ctx.step(key, fn)

    report = await repeated_sampling(items, ctx.meter, model="g", n=4, checker=check, step=step, emit=ctx.emit)
    assert ctx.steps_executed == 6 and set(seen) == {f"t{i}" for i in range(6)}
    events = [d for t, d in await runs.events(rid) if t == "log" and d.get("kind") == "ensemble.coverage.problem"]
    assert sorted(e["problem"] for e in events) == list(range(6))  # type: ignore[type-var]
    # A second attempt (the first worker died after committing) replays every problem: no call.
    calls = engine.calls
    again = await runs.attempt(rid, router)

    async def step2(key: str, fn: Any) -> Any:
        return await again.step(key, fn)

    replayed = await repeated_sampling(items, again.meter, model="g", n=4, checker=check, step=step2)
    assert engine.calls == calls and again.steps_replayed == 6 and again.steps_executed == 0
    assert replayed.model_dump() == report.model_dump()


async def test_budget_stop_reports_what_finished(runs: Runs) -> None:
    router = LocalRouter({"g": sampler(0.5)})
    spec = TaskSpec(kind="chat", input="coverage", budget=Budget(model_calls=5))
    _, ctx = await runs.start(spec, router)
    report = await repeated_sampling(problems(12), ctx.meter, model="g", n=3, concurrency=1)
    assert report.stop == "budget_exhausted" and "model_calls" in (report.detail or "")
    assert report.evaluated == 5 and report.problems == 12
    assert (await ledger_cost(ctx.ledger)).total.usage.model_calls == 5


async def test_checker_errors_are_precise(runs: Runs) -> None:
    router = LocalRouter({"g": sampler(0.5)})
    _, ctx = await runs.start(TaskSpec(kind="chat", input="x"), router)
    with pytest.raises(ValueError, match="has no expected answer for exact match"):
        await repeated_sampling([Problem(input="q?")], ctx.meter, model="g", n=2)
    with pytest.raises(ValueError, match="unknown checker 'nope'; known checkers: exact"):
        await repeated_sampling(problems(1), ctx.meter, model="g", n=2, checker="nope")
    with pytest.raises(EnsembleError, match="model 'h' is not served"):
        await repeated_sampling(problems(1), ctx.meter, model="h", n=2)
    with pytest.raises(ValueError, match="returned 'yes'"):
        await repeated_sampling(problems(1), ctx.meter, model="g", n=2, checker=lambda r, p: "yes")  # type: ignore[arg-type,return-value]


# -- as a strategy / layer in configs ----------------------------------------------------------------


async def test_repeated_sampling_strategy_in_a_config(runs: Runs) -> None:
    router = LocalRouter({"g": sampler(0.3)})
    _, ctx = await runs.start(TaskSpec(kind="chat", input="x"), router)
    config = parse_config({"name": "rs", "strategy": {"type": "repeated_sampling", "model": "g", "n": 6}})[0]
    assert [c.type for layer in config.layers for c in layer.components] == ["generator", "checker"]
    with pytest.raises(EnsembleError, match=r"layers\[1\]\[0\]: an exact-match checker needs an expected answer"):
        Executor(config, problems(1)[0].messages(), ctx.meter)
    solved = 0
    for i, prob in enumerate(problems(40)):
        res = await Executor(config, prob.messages(), ctx.meter, problem=prob, seed=i).run()
        check = res.layers[1].components[0]
        passed = check.detail["passed"]
        assert len(passed) == 6 and check.detail["solved"] == any(passed)
        if any(passed):
            solved += 1
            assert res.output == "so 42" and all(c.score == 1.0 for c in res.candidates)
            assert len(res.candidates) == sum(passed)
        else:
            assert check.degraded and len(res.candidates) == 6  # none passed: all kept, none dropped
    predicted = 1 - 0.7**6
    assert abs(solved / 40 - predicted) <= _ci99(predicted, 40) + 0.05

    # A registered Python checker, by name, from JSON.
    register_checker("ends_with_17", lambda response, problem: response.endswith("17"))
    named = parse_config(
        {"name": "rs17", "strategy": {"type": "repeated_sampling", "model": "g", "n": 4, "checker": "ends_with_17"}}
    )[0]
    res = await Executor(named, problems(1)[0].messages(), ctx.meter, seed=1).run()
    assert all(c.text == "so 17" for c in res.candidates)
    with pytest.raises(ValueError, match="checker applies to repeated_sampling only"):
        parse_config({"name": "x", "strategy": {"type": "best_of_n", "model": "g", "checker": "exact"}})
    with pytest.raises(ValueError, match=r"layers\[0\]\[0\].*expected applies to checkers only"):
        parse_config({"name": "x", "layers": [[{"type": "generator", "model": "g", "expected": "1"}]]})


async def test_ensemble_run_with_a_checker_layer_uses_the_expected_option(runs: Runs) -> None:
    router = LocalRouter({"g": sampler(0.5)})
    spec = TaskSpec(
        kind="ensemble",
        input="What is six times seven?",
        ensemble={"name": "rs", "strategy": {"type": "repeated_sampling", "model": "g", "n": 8}},
        options={"expected": "42", "seed": 3},
    )
    rid, ctx = await runs.start(spec, router)
    out = await ENSEMBLE_KIND.run(ctx)
    assert out.status == RunStatus.SUCCEEDED and out.output == "so 42"
    layer_events = [d for t, d in await runs.events(rid) if t == "ensemble.layer"]
    checker = layer_events[1]["components"][0]  # type: ignore[index]
    assert checker["type"] == "checker" and checker["solved"] is True and checker["passed"] >= 1
