"""An ensemble as an agent's answering step: the agent's tool conversation is flattened to text and
answered by the ensemble, every inner call metered by a real ledger on Valkey."""

from __future__ import annotations

import pytest

from conclave.agents.ensemble import answer_with_ensemble, flatten_for_ensemble
from conclave.budgets.cost import ledger_cost
from conclave.cluster.router import LocalRouter
from conclave.core.ledger import BudgetExhausted
from conclave.schema import Budget, TaskSpec
from conclave.schema.chat import ChatMessage, ChatRequest, ChatResponse, FunctionCall, ToolCall
from conclave.testing.simjudge import EnsembleSim

from ._runs import Runs

pytestmark = pytest.mark.redis

CONVERSATION = [
    ChatMessage(role="system", content="You are a careful agent."),
    ChatMessage(role="user", content="What is six times seven? Check with the calculator."),
    ChatMessage(
        role="assistant",
        content=None,
        tool_calls=[ToolCall(id="c1", function=FunctionCall(name="calc", arguments='{"expr": "6*7"}'))],
    ),
    ChatMessage(role="tool", tool_call_id="c1", content="42"),
]


class Recording(LocalRouter):
    def __init__(self, engines: dict[str, EnsembleSim]) -> None:
        super().__init__(engines)
        self.seen: list[ChatRequest] = []

    async def chat(self, model: str, request: ChatRequest) -> ChatResponse:
        self.seen.append(request)
        return await super().chat(model, request)


def test_flatten_turns_tool_traffic_into_text() -> None:
    flat = flatten_for_ensemble(CONVERSATION)
    assert [m.role for m in flat] == ["system", "user", "assistant", "user", "user"]
    assert flat[2].text() == '[called calc({"expr": "6*7"})]'
    assert flat[3].text() == "[result of calc]: 42"
    assert flat[-1].text().startswith("Give your final answer")
    assert all(m.tool_calls is None and m.role != "tool" for m in flat)
    # A conversation already ending with the user's question is left as it is.
    assert flatten_for_ensemble(CONVERSATION[:2]) == [CONVERSATION[0], CONVERSATION[1]]


async def test_answer_with_ensemble_runs_the_ensemble_through_the_meter(runs: Runs) -> None:
    engine = EnsembleSim(
        {"mode": "sample", "replies": [{"content": "It is 42", "weight": 0.5}, {"content": "It is 41", "weight": 0.5}]},
        name="s",
        prefer=r"\b42\b",
    )
    router = Recording({"s": engine})
    _, ctx = await runs.start(TaskSpec(kind="agent", input="x"), router)
    answer = await answer_with_ensemble("ensemble/best-of-n-local", CONVERSATION, ctx.meter, default_model="s", seed=2)
    assert len(router.seen) == 2 and not any(r.tools for r in router.seen)
    samples = [c.message.content for c in (await engine.chat(router.seen[0])).choices]  # the sim is seeded
    assert len(samples) == 4 and "It is 42" in samples
    assert answer == "It is 42"  # the ranker put a right one first
    assert "[result of calc]: 42" in router.seen[0].messages[3].text()
    cost = await ledger_cost(ctx.ledger)
    assert cost.total.usage.model_calls == 2 and "layer1/ranker" in cost.by_stage
    # An inline config works too; the model map sends its model to a served one.
    inline = {"name": "one", "layers": [[{"type": "generator", "model": "m", "samples": 1}]]}
    assert await answer_with_ensemble(inline, CONVERSATION, ctx.meter, default_model="s") in ("It is 42", "It is 41")


async def test_no_complete_layer_raises_budget_exhausted(runs: Runs) -> None:
    router = Recording({"s": EnsembleSim(name="s")})
    _, ctx = await runs.start(TaskSpec(kind="agent", input="x", budget=Budget(model_calls=1)), router)
    await ctx.meter.chat(ChatRequest(messages=CONVERSATION[:2], max_tokens=4), model="s")
    with pytest.raises(BudgetExhausted):
        await answer_with_ensemble("best-of-n-local", CONVERSATION, ctx.meter, default_model="s")
