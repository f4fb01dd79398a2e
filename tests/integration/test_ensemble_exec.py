"""Ensembles executed on simulated engines, metered by a real ledger on Valkey.

Every test runs inside a real run (submitted, claimed, committed through the store's Lua scripts),
so budgets, events and durable steps are the production ones; only the models are simulated.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from conclave.agents.ensemble import (
    EnsembleConfig,
    EnsembleError,
    Executor,
    ensemble_chat,
    load_config,
    parse_config,
)
from conclave.agents.ensemble.kind import KIND
from conclave.agents.runtime import RunEnv
from conclave.agents.runtime import open_run as open_run_ctx
from conclave.budgets.cost import ledger_cost
from conclave.budgets.pricing import Pricing
from conclave.cluster.engine import Engine
from conclave.cluster.engines.sim import SimEngine
from conclave.cluster.router import LocalRouter
from conclave.controller.redis_store import RedisRunStore
from conclave.core.context import RunContext
from conclave.core.ledger import BudgetExhausted
from conclave.schema import Budget, RunStatus, StopReason, TaskSpec
from conclave.schema.chat import ChatMessage, ChatRequest, ChatResponse
from conclave.testing.simjudge import EnsembleSim

pytestmark = pytest.mark.redis

CORPUS = Path("/work/shared/compat/archon-configs")
Q = [ChatMessage(role="user", content="What is six times seven?")]


class CountingRouter(LocalRouter):
    """A LocalRouter that records every request and the most requests in flight at once."""

    def __init__(self, engines: Mapping[str, Engine]) -> None:
        super().__init__(engines)
        self.inflight = 0
        self.peak = 0
        self.requests: list[tuple[str, int]] = []

    async def chat(self, model: str, request: ChatRequest) -> ChatResponse:
        self.inflight += 1
        self.peak = max(self.peak, self.inflight)
        self.requests.append((model, request.n))
        try:
            return await super().chat(model, request)
        finally:
            self.inflight -= 1


async def open_run(
    redis: Redis,
    prefix: str,
    router: LocalRouter,
    *,
    budget: Budget | None = None,
    spec: TaskSpec | None = None,
) -> RunContext:
    """Submit and claim a real run, and give its context (meter, ledger, steps, events)."""
    store = RedisRunStore(redis, prefix)
    await store.ready()
    spec = spec or TaskSpec(kind="ensemble", input=Q[0].text(), budget=budget)
    run = (await store.submit(spec)).run
    entries = await store.read_new("c", 10, 100)
    entry = next(e for e in entries if e.rid == run.id)
    claim = await store.claim(run.id, owner="owner-1", qid=entry.qid, worker="w", max_attempts=3)
    assert claim.outcome == "ok"
    return await context_of(store, run.id, spec, router, claim.attempt, budget)


async def context_of(
    store: RedisRunStore, rid: str, spec: TaskSpec, router: LocalRouter, attempt: int, budget: Budget | None
) -> RunContext:
    run = await store.get(rid)
    assert run is not None
    run = run.model_copy(update={"spec": spec.model_copy(update={"budget": budget or spec.budget})})
    return await open_run_ctx(
        store, run, owner="owner-1", attempt=attempt, env=RunEnv(router=router, pricing=Pricing())
    )


def cfg(layers: list[Any], **extra: Any) -> EnsembleConfig:
    return parse_config({"name": "t", "layers": layers, **extra})[0]


def gen(model: str = "g", samples: int = 1, **kw: Any) -> dict[str, Any]:
    return {"type": "generator", "model": model, "samples": samples, **kw}


def answers(*pairs: tuple[str, float], **opts: Any) -> dict[str, Any]:
    return {"mode": "sample", "replies": [{"content": c, "weight": w} for c, w in pairs], **opts}


# -- components ------------------------------------------------------------------------------------


async def test_pipeline_of_every_component(redis: Redis, prefix: str) -> None:
    gen_engine = EnsembleSim(answers(("The answer is 42", 0.5), ("The answer is 41", 0.5)), name="g")
    judge = EnsembleSim(name="j", prefer=r"\b42\b")
    router = CountingRouter({"g": gen_engine, "j": judge})
    ctx = await open_run(redis, prefix, router)
    config = cfg(
        [
            [gen(samples=6), {"type": "unit_test_generator", "model": "j", "unit_test_cap": 2}],
            [{"type": "critic", "model": "j"}],
            [{"type": "ranker", "model": "j", "top_k": 5}],
            [{"type": "verifier", "model": "j"}],
            [{"type": "unit_test_evaluator", "model": "j", "top_k": 2, "remove_unit_tests_from_prompt": True}],
            [{"type": "fuser", "model": "j", "samples": 2}],
            [{"type": "voter"}],
        ]
    )
    res = await Executor(config, Q, ctx.meter, emit=ctx.emit, seed=3).run()
    layers = res.layers
    texts0 = [c.text for c in layers[0].state.candidates]
    assert len(texts0) == 6 and len(layers[0].state.unit_tests) == 2
    assert all(c.critique and "Strengths" in c.critique for c in layers[1].state.candidates)
    ranked = [c.text for c in layers[2].state.candidates]
    good = [t for t in texts0 if "42" in t]
    assert ranked[: len(good)] == good and len(ranked) == 5  # good first, in their order, top 5
    assert all("42" in c.text for c in layers[3].state.candidates)  # the verifier dropped the 41s
    assert all(c.critique for c in layers[3].state.candidates)  # critiques travel with candidates
    assert [c.score for c in layers[4].state.candidates] == [2.0, 2.0][: len(layers[4].state.candidates)]
    assert len(layers[5].state.candidates) == 2 and layers[5].state.candidates[0].critique is None
    assert res.output.startswith("fused from") and "42" in res.output
    assert res.layers_completed == 7 and res.stop == "completed"
    events = [e for e in await ctx.store.events(ctx.run_id) if e.type == "ensemble.layer"]
    assert [e.data["layer"] for e in events] == list(range(7))
    cost = await ledger_cost(ctx.ledger)
    assert res.usage == cost.total.usage and res.usage.model_calls > 0  # one usage type: the ledger's
    assert sum(layer.usage.model_calls for layer in res.layers) == res.usage.model_calls
    assert "layer3/verifier" in cost.by_stage and "verifier#0" in cost.by_agent


async def test_malformed_judge_output_is_retried_within_budget(redis: Redis, prefix: str) -> None:
    gens = EnsembleSim(answers(("a 1", 1)), name="g")
    ranker = SimEngine(
        {"mode": "script", "replies": [{"content": "they are all fine"}, {"content": "Answer: [2] > [1]"}]}
    )
    router = CountingRouter({"g": gens, "r": ranker})
    ctx = await open_run(redis, prefix, router)
    res = await Executor(cfg([[gen(samples=2)], [{"type": "ranker", "model": "r", "top_k": 1}]]), Q, ctx.meter).run()
    assert ranker.calls == 2  # one malformed reply, one retry
    assert res.layers[1].components[0].detail["ranking"] == [1, 0]
    assert res.candidates[0].origin == "L0.c0.s1"
    assert (await ledger_cost(ctx.ledger)).total.usage.model_calls == 3


@pytest.mark.parametrize(
    ("layer", "check"),
    [
        ({"type": "critic", "model": "bad"}, "critic"),
        ({"type": "ranker", "model": "bad", "top_k": 1}, "ranker"),
        ({"type": "verifier", "model": "bad", "first_k": 1}, "verifier"),
        ({"type": "unit_test_generator", "model": "bad"}, "unit_test_generator"),
    ],
)
async def test_components_degrade_predictably_after_retries(
    redis: Redis, prefix: str, layer: dict[str, Any], check: str
) -> None:
    gens = EnsembleSim(answers(("x 1", 1), ("y 2", 1)), name="g")
    bad = SimEngine({"mode": "script", "replies": [{"content": "no idea, sorry"}]})  # never the format
    ctx = await open_run(redis, prefix, CountingRouter({"g": gens, "bad": bad}))
    config = cfg([[gen(samples=3)], [layer]])
    res = await Executor(config, Q, ctx.meter, max_parse_retries=1).run()
    before = res.layers[0].state.candidates
    after = res.layers[1].state.candidates
    report = res.layers[1].components[0]
    assert report.degraded
    # Degrading never drops a candidate: every one survives, in its order.
    assert [c.origin for c in after] == [c.origin for c in before]
    if check == "critic":
        assert all(c.critique is None for c in after)
    if check == "unit_test_generator":
        assert res.layers[1].state.unit_tests == []
    calls_per = {"critic": 2, "ranker": 2, "verifier": 3 * (1 + 2), "unit_test_generator": 2}[check]
    assert bad.calls == calls_per


async def test_evaluator_without_tests_and_fuser_first_layer_do_nothing(redis: Redis, prefix: str) -> None:
    gens = EnsembleSim(answers(("a 1", 1)), name="g")
    judge = EnsembleSim(name="j")
    ctx = await open_run(redis, prefix, CountingRouter({"g": gens, "j": judge}))
    res = await Executor(
        cfg([[gen(samples=2), {"type": "fuser", "model": "j"}], [{"type": "unit_test_evaluator", "model": "j"}]]),
        Q,
        ctx.meter,
    ).run()
    assert res.layers[0].components[1].degraded and judge.calls == 0
    assert res.layers[1].components[0].degraded == "no unit tests to apply; candidates kept"
    assert len(res.candidates) == 2


# -- concurrency and batching ------------------------------------------------------------------------


async def test_a_layer_of_8_generators_runs_concurrently(redis: Redis, prefix: str) -> None:
    engines = {f"m{k}": SimEngine({"mode": "echo", "latency_s": 0.05}) for k in range(8)}
    router = CountingRouter(engines)
    ctx = await open_run(redis, prefix, router)
    config = cfg([[gen(f"m{k}") for k in range(8)]])
    res = await Executor(config, Q, ctx.meter).run()
    assert router.peak == 8  # all eight calls were in flight together
    assert len(res.candidates) == 8
    seq = CountingRouter(engines)
    ctx2 = await open_run(redis, prefix + "s", seq)
    await Executor(config, Q, ctx2.meter, sequential=True).run()
    assert seq.peak == 1


async def test_same_prompt_samples_go_out_as_one_request_with_n(redis: Redis, prefix: str) -> None:
    router = CountingRouter({"g": EnsembleSim(answers(("a 1", 1), ("b 2", 1)), name="g")})
    ctx = await open_run(redis, prefix, router)
    config = cfg([[gen(samples=3), gen(samples=5), gen(samples=2, temperature=0.1), gen(samples=200)]])
    res = await Executor(config, Q, ctx.meter).run()
    # Three generators share settings (208 samples: chunks of 128 + 80); one differs in temperature.
    assert sorted(router.requests) == sorted([("g", 128), ("g", 80), ("g", 2)])
    origins = [c.origin for c in res.candidates]
    assert origins[:8] == [f"L0.c0.s{k}" for k in range(3)] + [f"L0.c1.s{k}" for k in range(5)]
    assert len(origins) == 210


async def test_final_choice_is_deterministic(redis: Redis, prefix: str) -> None:
    outputs = []
    for trial in range(3):
        engines: dict[str, Engine] = {
            # Latencies differ per trial, so completion order differs; the result must not.
            f"m{k}": SimEngine(
                {"mode": "sample", "seed": k, "latency_s": 0.001 * ((k + trial) % 4), "replies": [{"content": f"r{k}"}]}
            )
            for k in range(4)
        }
        engines["j"] = EnsembleSim(name="j")
        ctx = await open_run(redis, f"{prefix}{trial}", CountingRouter(engines))
        config = cfg([[gen(f"m{k}") for k in range(4)], [{"type": "critic", "model": "j"}]])
        res = await Executor(config, Q, ctx.meter, seed=7).run()
        outputs.append([c.text for c in res.candidates])
    assert outputs[0] == outputs[1] == outputs[2] == ["r0", "r1", "r2", "r3"]


# -- strategies ------------------------------------------------------------------------------------


def _ci99(p: float, n: int) -> float:
    return 2.576 * math.sqrt(p * (1 - p) / n)


async def test_self_consistency_matches_the_binomial_prediction(redis: Redis, prefix: str) -> None:
    p, n, trials = 0.6, 5, 300
    router = CountingRouter({"g": SimEngine(answers(("so 42", p), ("so 17", 1 - p)))})
    ctx = await open_run(redis, prefix, router)
    config = parse_config({"name": "sc", "strategy": {"type": "self_consistency", "model": "g", "n": n}})[0]
    wins = 0
    for t in range(trials):
        res = await Executor(config, Q, ctx.meter, seed=t).run()
        wins += "42" in res.output
    predicted = sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(3, n + 1))
    assert abs(wins / trials - predicted) <= _ci99(predicted, trials), (wins / trials, predicted)
    single = 0
    for t in range(trials):
        single += "42" in (await Executor(cfg([[gen()]]), Q, ctx.meter, seed=t).run()).output
    assert abs(single / trials - p) <= _ci99(p, trials)


async def test_best_of_n_with_a_verifier_matches_the_binomial_prediction(redis: Redis, prefix: str) -> None:
    p, n, trials = 0.3, 3, 200
    router = CountingRouter(
        {"g": SimEngine(answers(("so 42", p), ("so 17", 1 - p))), "v": EnsembleSim(prefer=r"\b42\b")}
    )
    ctx = await open_run(redis, prefix, router)
    config = parse_config(
        {
            "name": "bon",
            "strategy": {"type": "best_of_n", "model": "g", "n": n, "selector": "verifier", "judge_model": "v"},
        }
    )[0]
    wins = 0
    for t in range(trials):
        wins += "42" in (await Executor(config, Q, ctx.meter, seed=t).run()).output
    predicted = 1 - (1 - p) ** n
    assert abs(wins / trials - predicted) <= _ci99(predicted, trials), (wins / trials, predicted)


async def test_first_finish_cancels_the_losers_and_only_the_winner_counts(redis: Redis, prefix: str) -> None:
    long = " ".join(["word"] * 60)
    engine = SimEngine({**answers(("short answer", 1), (long, 3)), "tokens_per_s": 200.0})
    router = CountingRouter({"g": engine})
    ctx = await open_run(redis, prefix, router, budget=Budget(output_tokens=100_000))
    config = parse_config(
        {"name": "ff", "strategy": {"type": "first_finish", "model": "g", "n": 6, "max_tokens": 100}}
    )[0]
    res = await Executor(config, Q, ctx.meter, seed=1).run()
    assert res.output == "short answer"
    assert len(router.requests) == 6 and engine.calls == 6
    snap = await ctx.ledger.snapshot()
    calls = snap.used[("run", "model_calls")]
    # Only calls that completed count: short answers (two tokens) that finished with the winner;
    # every long answer was cancelled before it finished and counts nothing.
    assert 1 <= calls < 6
    assert snap.used[("run", "output_tokens")] == 2 * calls
    assert snap.reserved.get(("run", "output_tokens"), 0) == 0  # the losers' holds were released


# -- budgets ----------------------------------------------------------------------------------------


async def test_samples_shrink_to_fit_the_budget(redis: Redis, prefix: str) -> None:
    router = CountingRouter({"g": EnsembleSim(answers(("one two", 1)), name="g"), "j": EnsembleSim(name="j")})
    ctx = await open_run(redis, prefix, router, budget=Budget(output_tokens=1000))
    config = cfg([[gen(samples=20, max_tokens=100)], [{"type": "fuser", "model": "j", "max_tokens": 100}]])
    res = await Executor(config, Q, ctx.meter, emit=ctx.emit).run()
    first = res.layers[0].components[0]
    assert first.samples_planned == 20 and 1 <= first.samples <= 9  # 9 x 100 + the fuser would not fit 1000
    assert res.stop == "completed"
    cost = await ledger_cost(ctx.ledger)
    assert cost.total.usage.output_tokens <= 1000
    events = [e for e in await ctx.store.events(ctx.run_id) if e.type == "ensemble.layer"]
    assert events[0].data["components"][0]["samples_planned"] == 20


async def test_budget_stops_at_the_last_complete_layer(redis: Redis, prefix: str) -> None:
    router = CountingRouter({"g": EnsembleSim(answers(("so 42", 1)), name="g"), "j": EnsembleSim(name="j")})
    ctx = await open_run(redis, prefix, router, budget=Budget(model_calls=2))
    config = cfg([[gen(samples=3)], [{"type": "critic", "model": "j"}], [{"type": "verifier", "model": "j"}]])
    res = await Executor(config, Q, ctx.meter).run()
    assert res.stop == "budget_exhausted" and res.layers_completed == 2
    assert "model_calls" in (res.detail or "")
    assert res.output == "so 42"
    snap = await ctx.ledger.snapshot()
    assert snap.used[("run", "model_calls")] <= 2


async def test_budget_exhausted_before_any_layer_propagates(redis: Redis, prefix: str) -> None:
    router = CountingRouter({"g": EnsembleSim(answers(("x", 1)), name="g")})
    ctx = await open_run(redis, prefix, router, budget=Budget(model_calls=1))
    with pytest.raises(BudgetExhausted):
        await Executor(cfg([[gen("g"), gen("g", temperature=0.1)]]), Q, ctx.meter).run()


# -- models, the kind, the OpenAI surface -----------------------------------------------------------


async def test_archon_models_map_onto_served_ones(redis: Redis, prefix: str) -> None:
    path = CORPUS / "archon-70Bx8_1_samples_then_verifier_batch2_with_sonnet3.5_then_fuser_with_Qwen2_72b.json"
    if not path.is_file():
        pytest.skip("the Archon compat corpus is not available")
    config = load_config(path)
    router = CountingRouter({"g": EnsembleSim(answers(("so 42", 0.5), ("so 17", 0.5)), name="g", prefer="42")})
    ctx = await open_run(redis, prefix, router)
    with pytest.raises(EnsembleError, match=r"layers\[0\]\[0\]: model '.*' is not served"):
        Executor(config, Q, ctx.meter)
    res = await Executor(config.model_copy(update={"default_model": "g"}), Q, ctx.meter).run()
    assert res.layers_completed == len(config.layers) and res.output


async def test_kind_runs_layers_as_durable_steps_and_resumes(redis: Redis, prefix: str) -> None:
    engine = EnsembleSim(answers(("so 42", 0.5), ("so 17", 0.5)), name="g", prefer="42")
    router = CountingRouter({"g": engine})
    spec = TaskSpec(
        kind="ensemble",
        input="What is six times seven?",
        model="ensemble/moa-lite-local",
        options={"model_map": {"smollm2-135m": "g"}, "seed": 5},
    )
    KIND.check(spec)  # type: ignore[misc]
    ctx = await open_run(redis, prefix, router, spec=spec)
    out = await KIND.run(ctx)
    assert out.status == RunStatus.SUCCEEDED and out.output and out.result
    assert out.result["layers_completed"] == 3 and ctx.steps_executed == 3
    calls = engine.calls
    # A second attempt on the same run replays the committed layers and calls no model.
    again = await context_of(ctx.store, ctx.run_id, spec, router, 2, None)
    out2 = await KIND.run(again)
    assert engine.calls == calls and again.steps_replayed == 3 and again.steps_executed == 0
    assert out2.output == out.output


async def test_kind_reports_budget_exhaustion_with_the_partial_answer(redis: Redis, prefix: str) -> None:
    router = CountingRouter({"g": EnsembleSim(answers(("so 42", 1)), name="g")})
    spec = TaskSpec(
        kind="ensemble",
        input="q?",
        ensemble={
            "name": "x",
            "layers": [[gen(samples=2)], [{"type": "critic", "model": "g"}], [{"type": "fuser", "model": "g"}]],
        },
        budget=Budget(model_calls=2),
    )
    ctx = await open_run(redis, prefix, router, spec=spec)
    out = await KIND.run(ctx)
    assert out.status == RunStatus.BUDGET_EXHAUSTED and out.stop_reason == StopReason.BUDGET_EXHAUSTED
    assert out.output == "so 42" and ctx.partial_output == "so 42"


def test_kind_check_names_the_field() -> None:
    with pytest.raises(ValueError, match="needs 'ensemble'") as e:
        KIND.check(TaskSpec(kind="ensemble", input="x"))  # type: ignore[misc]
    assert getattr(e.value, "field", None) == "ensemble"
    with pytest.raises(ValueError, match="unknown ensemble") as e:
        KIND.check(TaskSpec(kind="ensemble", input="x", model="ensemble/nope"))  # type: ignore[misc]
    assert getattr(e.value, "field", None) == "model"
    with pytest.raises(ValueError, match=r"layers\[0\]\[0\].tmperature: unknown field"):
        KIND.check(
            TaskSpec(
                kind="ensemble",
                input="x",
                ensemble={"name": "x", "layers": [[{"type": "generator", "model": "m", "tmperature": 1}]]},
            )
        )  # type: ignore[misc]


async def test_ensemble_chat_sums_usage_over_inner_calls(redis: Redis, prefix: str) -> None:
    router = CountingRouter({"smollm2-135m": EnsembleSim(answers(("so 42", 1)), name="s")})
    ctx = await open_run(redis, prefix, router, budget=Budget(output_tokens=100_000))
    request = ChatRequest(model="ensemble/best-of-n-local", messages=Q, max_tokens=50, seed=2)
    response = await ensemble_chat("ensemble/best-of-n-local", request, ctx.meter)
    cost = await ledger_cost(ctx.ledger)
    assert response.model == "ensemble/best-of-n-local" and response.message.content == "so 42"
    assert response.usage.completion_tokens == cost.total.usage.output_tokens > 0
    assert response.usage.prompt_tokens == cost.total.usage.input_tokens
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens
    assert len(router.requests) == 2  # four samples in one request, one ranking
    with pytest.raises(EnsembleError, match="tools"):
        await ensemble_chat(
            "best-of-n-local",
            ChatRequest.model_validate(
                {"messages": [m.model_dump() for m in Q], "tools": [{"type": "function", "function": {"name": "f"}}]}
            ),
            ctx.meter,
        )
    assert json.loads(response.model_dump_json())["usage"]["total_tokens"] > 0
