"""The per-request ceiling of ensembles on the OpenAI endpoint: the worst case from the call plan,
and the in-memory ledger that holds every inner call to it (through the real ``Meter``)."""

from __future__ import annotations

import asyncio

import pytest

from conclave.agents.ensemble import load_named, parse_config
from conclave.agents.meter import Meter
from conclave.api.ceiling import worst_case
from conclave.budgets.pricing import Pricing
from conclave.cluster.engines.sim import SimEngine
from conclave.cluster.router import LocalRouter
from conclave.controller.calls import CallLedger
from conclave.core.ledger import BudgetExhausted
from conclave.core.memory import InMemoryRunStore
from conclave.schema.chat import ChatMessage, ChatRequest, EngineError


def test_worst_case_counts_the_plan_and_every_judge_re_ask() -> None:
    best = load_named("best-of-n-local")  # 4 samples in one request, then a ranker
    assert worst_case(best, None, 0).model_calls == 2
    assert worst_case(best, None, 2).model_calls == 4  # the ranker may be re-asked twice
    assert worst_case(best, None, 2).output_tokens == 4 * 256 + 256 * 3
    assert worst_case(best, 10, 2).output_tokens == 4 * 10 + 10 * 3  # max_tokens caps every call
    moa = load_named("moa-lite-local")  # 3 samples; a critic (its own max_parse_retries=1); a fuser
    w = worst_case(moa, 100, 5)
    assert (w.model_calls, w.output_tokens) == (1 + 2 + 1, 300 + 200 + 100)
    verify, _ = parse_config(
        {
            "name": "v",
            "layers": [
                [{"type": "generator", "model": "m", "samples": 3, "max_tokens": 50}],
                [{"type": "verifier", "model": "m", "max_tokens": 20}],
            ],
        }
    )
    # 1 batched request; the verifier reasons (3 calls) and gives verdicts (3 calls, each re-askable).
    assert worst_case(verify, None, 1).model_calls == 1 + 6 + 3


def _meter(caps: dict[str, int], engine: SimEngine | None = None) -> tuple[Meter, CallLedger]:
    ledger = CallLedger(InMemoryRunStore(), "tenant-a", None, caps)
    router = LocalRouter({"m": engine or SimEngine({"mode": "echo"}, name="m")})
    return Meter(ledger=ledger, pricing=Pricing(), router=router, sink=ledger), ledger


def _req(max_tokens: int) -> ChatRequest:
    return ChatRequest(model="m", messages=[ChatMessage(role="user", content="one two three")], max_tokens=max_tokens)


async def test_concurrent_calls_never_pass_the_model_call_cap() -> None:
    meter, ledger = _meter({"model_calls": 5})
    results = await asyncio.gather(*(meter.chat(_req(8)) for _ in range(40)), return_exceptions=True)
    ok = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BudgetExhausted)]
    assert len(ok) == 5 and len(refused) == 35
    assert refused[0].limit == "model_calls"
    snap = await ledger.snapshot()
    assert snap.used[("run", "model_calls")] == 5 and ledger.open_holds == 0
    assert snap.by[("model", "m", "model_calls")] == 5  # the breakdown by model, as a run's ledger keeps it
    assert snap.reserved.get(("run", "model_calls"), 0) == 0


async def test_output_tokens_are_held_to_the_cap_by_shrinking_then_refusing() -> None:
    meter, ledger = _meter({"output_tokens": 30})
    first = await meter.chat(_req(20))
    second = await meter.chat(_req(20))  # only what is left fits: max_tokens shrinks to it
    snap = await ledger.snapshot()
    spent = snap.used[("run", "output_tokens")]
    assert spent == first.usage.completion_tokens + second.usage.completion_tokens <= 30
    with pytest.raises(BudgetExhausted) as e:
        for _ in range(100):  # every call writes at least one token: the cap is reached, never passed
            await meter.chat(_req(20))
    assert e.value.limit == "output_tokens"
    assert (await ledger.snapshot()).used[("run", "output_tokens")] <= 30


async def test_a_failed_call_releases_its_hold() -> None:
    meter, ledger = _meter({"model_calls": 1}, SimEngine({"mode": "echo", "failure_rate": 1.0}, name="m"))
    with pytest.raises(EngineError):
        await meter.chat(_req(5))
    snap = await ledger.snapshot()
    assert ledger.open_holds == 0 and snap.reserved.get(("run", "model_calls"), 0) == 0
    assert snap.used.get(("run", "model_calls"), 0) == 0


async def test_a_call_ledger_has_fixed_caps() -> None:
    with pytest.raises(TypeError, match="fixed"):
        await CallLedger(InMemoryRunStore(), "t", None, {"model_calls": 1}).set_caps({})
