"""A real agent run on the CPU model (SmolLM2-135M) with the file tools.

A 135M model is clumsy, so this asserts the mechanics, not the prose: every turn is a committed
step, tool calls are real calls recorded as events, the workspace in Redis matches the run's, and
the ledger's usage matches the model calls made.
"""

from __future__ import annotations

import json

import pytest

from conclave.agents.loop import run_agent
from conclave.budgets.cost import ledger_cost
from conclave.cluster.router import LocalRouter
from conclave.schema import RunStatus, StopReason, TaskSpec

from ._runs import Runs

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def smollm2() -> object:
    pytest.importorskip("llama_cpp")
    from conclave.cluster.defaults import smollm2_path
    from conclave.cluster.engines.llamacpp import LlamaCppEngine

    try:
        path = smollm2_path()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    return LlamaCppEngine({"model_path": str(path), "n_threads": 1, "n_ctx": 2048}, name="smollm2-135m")


async def test_cpu_model_agent_run_with_file_tools(runs: Runs, smollm2: object) -> None:
    router = LocalRouter({"smollm2-135m": smollm2})  # type: ignore[dict-item]
    spec = TaskSpec(
        kind="agent",
        input="List the files in your workspace, then write notes.md with one line.",
        model="smollm2-135m",
        tools=["fs"],
        max_steps=4,
        options={"tool_choice": "required", "min_tool_turns": 2, "max_tokens": 48, "temperature": 0, "seed": 1},
    )
    rid, ctx = await runs.start(spec, router)
    ctx.workspace.write("readme.md", "This workspace belongs to the agent.\n")
    await ctx.flush()
    out = await run_agent(ctx)

    assert out.stop_reason in (StopReason.END_TURN, StopReason.MAX_STEPS, StopReason.STUCK)
    # honest endings: a run that stopped without an answer (stuck, or the step cap with nothing said) failed
    answered = out.stop_reason is StopReason.END_TURN or (
        out.stop_reason is StopReason.MAX_STEPS and out.output is not None
    )
    assert out.status is (RunStatus.SUCCEEDED if answered else RunStatus.FAILED), (out.stop_reason, out.detail)
    assert out.result is not None
    turns = out.result["steps"]
    assert 1 <= turns <= 4
    steps = await runs.store.load_steps(rid)
    model_steps = sorted(k for k in steps if k.endswith("/model"))
    assert model_steps == [f"turn/{i}/model" for i in range(turns)]
    ev = await runs.events(rid)
    calls = [d for t, d in ev if t == "tool.call"]
    results = [d for t, d in ev if t == "tool.result"]
    assert len(calls) == len(results) == out.result["tool_calls"] >= 1
    assert all(json.loads(steps[f"turn/{d['turn']}/tool/{d['index']}"])["id"] == d["id"] for d in calls)
    assert [t for t, _ in ev].count("model.call") == turns
    # what the run holds is what Redis holds
    assert await runs.store.load_workspace(rid) == ctx.workspace.files()
    assert ctx.workspace.read("readme.md").startswith("This workspace")
    cost = await ledger_cost(ctx.ledger)
    usage = cost.total.usage
    assert usage.model_calls == turns and usage.input_tokens > 0 and usage.output_tokens > 0
    print(
        out.stop_reason, out.detail, [(d["name"], d["arguments"]) for d in calls], [r["content"][:200] for r in results]
    )
    ran = [r for r in results if r["name"] != "final_answer" and r["data"].get("error") != "arguments"]
    assert sum(usage.tool_calls.values()) == len(ran) >= 1  # turns 0 and 1 cannot answer, so a file tool ran
    assert cost.by_model["smollm2-135m"].usage.model_calls == turns
