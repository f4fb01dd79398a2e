"""Architecture search on simulated engines with a known best architecture, every call metered by a
real ledger on Valkey; resumption after an abandoned attempt; the budget stop.

The simulated task: a generator says the right answer (42) with probability 0.3 per sample; the
judge model verifies correctly (it knows the truth) but ranks without information (it keeps the
order it was given) and fuses by copying the first candidate. So more samples only help through a
verifier, a ranker or a fuser before the verifier narrows its choice, and a critic only costs: the
known best is 8 samples then a verifier, nothing else.
"""

from __future__ import annotations

from typing import Any

import pytest

from conclave.agents.ensemble import Problem, register_checker
from conclave.agents.ensemble.search import (
    KIND,
    Arch,
    SearchSpace,
    architecture_search,
    pareto_front,
)
from conclave.budgets.cost import ledger_cost
from conclave.budgets.pricing import Pricing
from conclave.cluster.engine import Engine
from conclave.cluster.engines.sim import SimEngine
from conclave.cluster.router import LocalRouter
from conclave.schema import Budget, RunStatus, TaskSpec
from conclave.schema.budget import Price
from conclave.schema.chat import ChatRequest, ChatResponse
from conclave.testing.simjudge import EnsembleSim

from ._runs import Runs

pytestmark = pytest.mark.redis

P = 0.3
PRICING = Pricing({"g": Price(input=1.0, output=2.0), "j": Price(input=1.0, output=2.0)})
SPACE = SearchSpace(
    generators=["g"],
    judges=["j"],
    samples=[1, 2, 4, 8],
    critic=[False, True],
    ranker_top_k=[None, 1],
    fuser=[False, True],
    verifier=[False, True],
    blocks=[1],
    max_tokens=16,
    judge_max_tokens=32,
)
BEST = Arch(generator="g", samples=8, verifier=True, judge="j")


class CrashingRouter(LocalRouter):
    """Counts requests; once armed, the next request fails as if the worker died mid-candidate."""

    def __init__(self, engines: dict[str, Engine]) -> None:
        super().__init__(engines)
        self.requests = 0
        self.crash_at: int | None = None

    async def chat(self, model: str, request: ChatRequest) -> ChatResponse:
        self.requests += 1
        if self.crash_at is not None and self.requests >= self.crash_at:
            raise RuntimeError("worker died")
        return await super().chat(model, request)


def engines() -> dict[str, Engine]:
    gen = SimEngine(
        {"mode": "sample", "replies": [{"content": "so 42", "weight": P}, {"content": "so 17", "weight": 1 - P}]}
    )
    return {"g": gen, "j": EnsembleSim(name="j", prefer=r"\b42\b", informed=("verifier",))}


def dev_set(m: int = 16) -> list[Problem]:
    return [Problem(input=f"Item {i}: what is six times seven?", expected="42") for i in range(m)]


def search_spec(**options: Any) -> TaskSpec:
    opts: dict[str, Any] = {
        "dev_set": [p.model_dump() for p in dev_set()],
        "space": SPACE.model_dump(),
        "max_candidates": 20,
        "n_random": 5,
        "seed": 7,
        **options,
    }
    return TaskSpec(kind="ensemble_search", input="find an ensemble for the arithmetic set", options=opts)


def test_pareto_front_and_arch_configs() -> None:
    pts = [(0, 0.5, 10.0), (1, 0.9, 30.0), (2, 0.5, 20.0), (3, 0.9, 30.0), (4, 0.95, 100.0)]
    assert pareto_front(pts) == [0, 1, 4]
    cfg = Arch(generator="g", samples=4, critic=True, ranker_top_k=2, fuser=True, blocks=2, verifier=True, judge="j")
    types = [[c.type for c in layer.components] for layer in cfg.config(SPACE).layers]
    assert types == [["generator"], ["critic"], ["ranker"], ["fuser"], ["critic"], ["ranker"], ["fuser"], ["verifier"]]
    fusers = [layer.components[0].samples for layer in cfg.config(SPACE).layers if layer.components[0].type == "fuser"]
    assert fusers == [4, 1]  # intermediate fusers keep the width, the last writes one answer
    # Equivalent points are one: blocks and judge do not matter without the components using them.
    lone = Arch(generator="g", samples=2, blocks=3, judge="x").canonical(SPACE.model_copy(update={"blocks": [1, 3]}))
    assert lone.blocks == 1 and lone.judge == "j"
    with pytest.raises(ValueError, match="samples must be between 1 and 128"):
        SearchSpace(generators=["g"], samples=[0])


async def test_search_finds_the_known_best_architecture_with_every_call_metered(runs: Runs) -> None:
    router = LocalRouter(engines())
    rid, ctx = await runs.start(search_spec(), router, pricing=PRICING)
    out = await KIND.run(ctx)
    assert out.status == RunStatus.SUCCEEDED and out.result is not None
    report = out.result
    best = report["best"]
    assert Arch.model_validate(best["arch"]) == BEST, best["label"]
    cands = report["candidates"]
    assert len(cands) == 20 and len({c["label"] for c in cands}) == 20  # no architecture twice
    assert [c["method"] for c in cands] == ["random"] * 5 + ["bayes"] * 15
    by_label = {c["label"]: c for c in cands}
    single = [c for c in cands if c["arch"]["samples"] == 1 and not c["arch"]["verifier"]]
    # Measurably better than sampling once (quality is the fraction of the 16 items right).
    assert best["quality"] >= 0.85 and all(c["quality"] <= 0.6 for c in single)
    assert report["front"][-1]["label"] == best["label"] or report["front"][-1]["quality"] <= best["quality"]
    assert best["label"] in {f["label"] for f in report["front"]}
    # Every call went through the ledger: per-candidate spend is the ledger's scope, the total its total.
    snap = await ctx.ledger.snapshot()
    for c in cands:
        assert snap.used.get((f"run/search/c{c['index']}", "model_calls"), 0) == c["spend"]["model_calls"] > 0
        assert snap.used.get((f"run/search/c{c['index']}", "usd"), 0) == c["spend"]["usd_pico"] > 0
    cost = await ledger_cost(ctx.ledger)
    assert cost.total.usage.model_calls == report["spend"]["model_calls"]
    assert report["cost_metric"] == "usd"
    events = [d for t, d in await runs.events(rid) if t == "log" and d.get("kind") == "ensemble.search.candidate"]
    assert [e["candidate"] for e in events] == list(range(20))
    assert by_label[best["label"]]["quality"] == best["quality"]
    assert ctx.steps_executed == 20


async def test_search_is_seeded_and_resumes_without_re_evaluating_committed_candidates(runs: Runs) -> None:
    # Reference: one uninterrupted run.
    ref_router = CrashingRouter(engines())
    _, ref_ctx = await runs.start(search_spec(max_candidates=8), ref_router)
    ref = await KIND.run(ref_ctx)
    assert ref.result is not None
    ref_calls = [c["spend"]["model_calls"] for c in ref.result["candidates"]]
    assert ref_router.requests == sum(ref_calls)

    # The same search, abandoned in the middle of candidate 4 (four candidates committed).
    router = CrashingRouter(engines())
    router.crash_at = sum(ref_calls[:4]) + 2
    rid, first = await runs.start(search_spec(max_candidates=8), router)
    with pytest.raises(RuntimeError, match="worker died"):
        await KIND.run(first)
    assert first.steps_executed == 4
    # Another worker claims the run: it replays candidates 0-3 and evaluates 4-7 only.
    router.crash_at = None
    router.requests = 0
    second = await runs.attempt(rid, router)
    out = await KIND.run(second)
    assert second.steps_replayed == 4 and second.steps_executed == 4
    assert router.requests == sum(ref_calls[4:])
    assert out.result is not None
    assert [c["label"] for c in out.result["candidates"]] == [c["label"] for c in ref.result["candidates"]]
    assert [c["quality"] for c in out.result["candidates"]] == [c["quality"] for c in ref.result["candidates"]]
    assert out.result["best"]["label"] == ref.result["best"]["label"]


async def test_budget_stop_returns_the_best_so_far_and_the_front(runs: Runs) -> None:
    router = LocalRouter(engines())
    spec = search_spec(max_candidates=50, method="random", seed=3).model_copy(
        update={"budget": Budget(model_calls=400)}
    )
    _, ctx = await runs.start(spec, router)
    out = await KIND.run(ctx)
    assert out.status == RunStatus.BUDGET_EXHAUSTED and out.result is not None
    report = out.result
    assert report["stop"] == "budget_exhausted" and "not completed" in report["detail"]
    done = report["candidates"]
    assert 0 < len(done) < 32
    top = max(c["quality"] for c in done)
    assert report["best"]["quality"] == top and report["best"]["label"] in {f["label"] for f in report["front"]}
    assert out.output and report["best"]["label"] in out.output
    assert (await ledger_cost(ctx.ledger)).total.usage.model_calls <= 400
    assert report["cost_metric"] == "tokens"  # nothing priced here


async def test_python_checker_and_llm_judge_scorers(runs: Runs) -> None:
    router = LocalRouter({**engines(), "judge": EnsembleSim(name="judge", prefer=r"\b42\b")})
    _, ctx = await runs.start(TaskSpec(kind="chat", input="x"), router)
    space = SPACE.model_copy(update={"samples": [1, 4], "critic": [False], "ranker_top_k": [None], "fuser": [False]})
    register_checker("says_42", lambda response, problem: "42" in response)
    by_checker = await architecture_search(dev_set(8), space, ctx.meter, scorer="says_42", max_candidates=6, seed=1)
    by_judge = await architecture_search(
        dev_set(8), space, ctx.meter, scorer={"type": "judge", "model": "judge"}, max_candidates=6, seed=1
    )
    assert by_checker.stop == by_judge.stop == "space_exhausted"  # 2 samples x 2 verifier = 4 points
    assert [c.quality for c in by_checker.candidates] == [c.quality for c in by_judge.candidates]
    # The judge's calls are the candidates' cost too: one judgment per dev example.
    for a, b in zip(by_checker.candidates, by_judge.candidates, strict=True):
        assert b.spend.model_calls == a.spend.model_calls + 8
    assert by_judge.best is not None and by_judge.best.arch == Arch(generator="g", samples=4, verifier=True, judge="j")
    with pytest.raises(ValueError, match=r"dev examples \[0\] have none"):
        await architecture_search([Problem(input="q?")], space, ctx.meter)
    with pytest.raises(ValueError, match="a judge scorer needs model"):
        await architecture_search(dev_set(1), space, ctx.meter, scorer={"type": "judge"})


def test_kind_check_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="dev_set"):
        KIND.options.model_validate({"space": SPACE.model_dump()})
    with pytest.raises(ValueError, match="unknown checker 'nope'"):
        KIND.check(search_spec(scorer="nope"))  # type: ignore[misc]
