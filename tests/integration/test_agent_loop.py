"""The agent loop driven by a scripted sim model against real Valkey: every built-in file tool,
parallel calls, malformed arguments, and every stop reason."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from conclave.agents.loop import run_agent
from conclave.budgets.cost import ledger_cost
from conclave.cluster.engines.sim import SimEngine
from conclave.cluster.router import LocalRouter
from conclave.schema import Budget, RunStatus, StopReason, TaskSpec
from conclave.tools import ToolContext, ToolRegistry, ToolSettings, tool
from conclave.tools.settings import PythonSettings

from ._runs import Runs

pytestmark = pytest.mark.redis


def call(name: str, arguments: dict[str, Any] | str) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


def script(*turns: list[dict[str, Any]] | str) -> SimEngine:
    """One reply per model turn: a list of tool calls, or the final text."""
    replies = [{"content": t} if isinstance(t, str) else {"tool_calls": t} for t in turns]
    return SimEngine({"mode": "script", "replies": replies})


def router(engine: SimEngine, window: int | None = None) -> LocalRouter:
    return LocalRouter({"sim": engine}, {"sim": window} if window else None)


def spec(tools: list[str], budget: Budget | None = None, **options: Any) -> TaskSpec:
    return TaskSpec(kind="agent", input="do the task", model="sim", tools=tools, budget=budget, options=options)


def tool_results(events: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [d for t, d in events if t == "tool.result"]


async def test_every_file_tool_runs_and_the_run_ends_with_the_answer(runs: Runs) -> None:
    engine = script(
        [
            call("write", {"path": "notes.md", "content": "alpha\nbeta\n"}),
            call("write", {"path": "d/a.txt", "content": "x"}),
        ],
        [
            call("ls", {}),
            call("read", {"path": "notes.md"}),
            call("append", {"path": "notes.md", "content": "gamma\n"}),
            call("grep", {"pattern": "^[ab]", "path": "notes.md"}),
        ],
        [
            call("edit", {"path": "notes.md", "old": "beta", "new": "BETA"}),
            call("edit", {"path": "d/a.txt", "start_line": 1, "new": "y"}),
        ],
        "all done",
    )
    rid, ctx = await runs.start(spec(["fs"]), router(engine))
    out = await run_agent(ctx)
    assert (out.status, out.stop_reason, out.output) == (RunStatus.SUCCEEDED, StopReason.END_TURN, "all done")
    assert out.result is not None and out.result["steps"] == 4 and out.result["tool_calls"] == 8
    assert out.result["tools"] == {"write": 2, "ls": 1, "read": 1, "append": 1, "grep": 1, "edit": 2}

    files = await runs.store.load_workspace(rid)
    assert files == {"notes.md": b"alpha\nBETA\ngamma\n", "d/a.txt": b"y\n"}
    ev = await runs.events(rid)
    results = tool_results(ev)
    assert len(results) == 8 and not any(r["is_error"] for r in results)
    by_name = {r["name"]: r["content"] for r in results}
    assert "d/  (1 files)" in by_name["ls"] and "notes.md  11 B, 2 lines" in by_name["ls"]
    assert "1\talpha" in by_name["read"] and "notes.md:2: beta" in by_name["grep"]
    types = [t for t, _ in ev]
    assert types.count("model.call") == 4 and types.count("agent.message") == 4 and types[-1] == "agent.stopped"
    calls = [d for t, d in ev if t == "tool.call"]
    assert len({c["idempotency_key"] for c in calls}) == 8
    steps = await runs.store.load_steps(rid)
    assert {"turn/0/model", "turn/0/tool/0", "turn/0/tool/1", "turn/2/tool/1", "turn/3/model", "stopped"} <= set(steps)
    cost = await ledger_cost(ctx.ledger)
    assert cost.total.usage.model_calls == 4 and cost.total.usage.tool_calls["write"] == 2
    assert cost.total.usage.input_tokens > 0


async def test_parallel_calls_of_one_turn_run_concurrently(runs: Runs) -> None:
    barrier = asyncio.Barrier(3)

    @tool
    async def meet(tag: str) -> str:
        """Wait until all three calls of the turn are running."""
        await asyncio.wait_for(barrier.wait(), 5)
        return f"met {tag}"

    reg = ToolRegistry()
    reg.register(meet)
    engine = script([call("meet", {"tag": "a"}), call("meet", {"tag": "b"}), call("meet", {"tag": "c"})], "ok")
    rid, ctx = await runs.start(spec(["meet"]), router(engine))
    out = await run_agent(ctx, registry=reg)
    assert out.stop_reason is StopReason.END_TURN
    assert sorted(r["content"] for r in tool_results(await runs.events(rid))) == ["met a", "met b", "met c"]


async def test_malformed_arguments_and_unknown_tools_become_tool_errors(runs: Runs) -> None:
    engine = script(
        [
            call("write", {"path": 5}),
            call("write", "{not json"),
            call("read", {"path": "x", "limit": 0, "extra": 1}),
            call("frobnicate", {}),
            call("read", {"path": "../etc/passwd"}),
        ],
        "recovered",
    )
    rid, ctx = await runs.start(spec(["fs"]), router(engine))
    out = await run_agent(ctx)
    assert out.status is RunStatus.SUCCEEDED and out.output == "recovered"
    r = {d["index"]: d for d in tool_results(await runs.events(rid))}
    assert all(d["is_error"] for d in r.values())
    assert "invalid arguments for tool 'write'" in r[0]["content"]
    assert "path: Input should be a valid string (got 5)" in r[0]["content"]
    assert "content: Field required" in r[0]["content"]
    assert "not valid JSON" in r[1]["content"]
    assert "limit: Input should be greater than or equal to 1" in r[2]["content"]
    assert "extra: Extra inputs are not permitted" in r[2]["content"]
    assert "unknown tool 'frobnicate'" in r[3]["content"] and "read" in r[3]["content"]
    assert "leaves the workspace" in r[4]["content"]
    # invalid calls reach no tool, so none is charged
    cost = await ledger_cost(ctx.ledger)
    assert cost.total.usage.tool_calls.get("read", 0) == 1  # only the path-escape call ran


async def test_max_steps(runs: Runs) -> None:
    engine = SimEngine(
        {"mode": "tool_loop", "steps": 100, "tool_name": "write", "tool_arguments": {"path": "f{i}.md", "content": "x"}}
    )
    rid, ctx = await runs.start(spec(["fs"], max_steps=3), router(engine))
    out = await run_agent(ctx)
    # the model never said anything: stopping at the cap is not an answer
    assert (out.status, out.stop_reason) == (RunStatus.FAILED, StopReason.MAX_STEPS)
    assert "without an answer" in (out.detail or "") and out.output is None
    assert out.result is not None and out.result["steps"] == 3
    assert sorted(ctx.workspace.list()) == ["f0.md", "f1.md", "f2.md"]


async def test_max_steps_with_something_said_reports_a_partial_answer(runs: Runs) -> None:
    replies = [
        {"content": "first thoughts", "tool_calls": [{"name": "ls", "arguments": {"path": f"{i}"}}]} for i in range(5)
    ]
    engine = SimEngine({"mode": "script", "replies": replies})
    _, ctx = await runs.start(spec(["fs"], max_steps=2), router(engine))
    out = await run_agent(ctx)
    assert (out.status, out.stop_reason, out.output) == (RunStatus.SUCCEEDED, StopReason.MAX_STEPS, "first thoughts")
    assert "partial answer" in (out.detail or "")


async def test_spec_max_steps_wins_over_the_option(runs: Runs) -> None:
    engine = SimEngine({"mode": "tool_loop", "steps": 100, "tool_name": "ls", "tool_arguments": {"path": "{i}"}})
    s = spec(["fs"], max_steps=10).model_copy(update={"max_steps": 2})
    _, ctx = await runs.start(s, router(engine))
    out = await run_agent(ctx)
    assert out.stop_reason is StopReason.MAX_STEPS and out.result is not None and out.result["steps"] == 2


async def test_stuck_on_the_same_call_and_result(runs: Runs) -> None:
    engine = SimEngine({"mode": "tool_loop", "steps": 100, "tool_name": "ls", "tool_arguments": {}})
    _, ctx = await runs.start(spec(["fs"]), router(engine))
    out = await run_agent(ctx)
    assert out.stop_reason is StopReason.STUCK and out.result is not None and out.result["steps"] == 3
    assert "same result 3 times" in (out.detail or "")
    assert out.status is RunStatus.FAILED, "a run stopped without an answer has not succeeded"


async def test_stuck_on_the_same_error(runs: Runs) -> None:
    # a different absolute path each time: different calls, but the same error text would repeat
    engine = SimEngine({"mode": "tool_loop", "steps": 100, "tool_name": "write", "tool_arguments": {"path": "/abs"}})
    _, ctx = await runs.start(spec(["fs"], stuck_repeats=3), router(engine))
    out = await run_agent(ctx)
    assert out.stop_reason is StopReason.STUCK and out.result is not None and out.result["steps"] == 3


async def test_stuck_on_the_same_error_from_different_calls(runs: Runs) -> None:
    engine = SimEngine({"mode": "tool_loop", "steps": 100, "tool_name": "write", "tool_arguments": {"path": "x{i}"}})
    _, ctx = await runs.start(spec(["fs"]), router(engine))
    out = await run_agent(ctx)
    assert out.stop_reason is StopReason.STUCK and "same error 3 times" in (out.detail or "")
    assert "content: Field required" in (out.detail or "")
    assert out.status is RunStatus.FAILED


async def test_budget_exhausted_returns_the_best_partial_answer(runs: Runs) -> None:
    engine = SimEngine(
        {
            "mode": "script",
            "replies": [
                {"content": "partial findings", "tool_calls": [{"name": "ls", "arguments": {}}]},
                {"content": "never reached"},
            ],
        }
    )
    budget = Budget(output_tokens=2)
    rid, ctx = await runs.start(spec(["fs"], budget), router(engine))
    out = await run_agent(ctx)
    assert (out.status, out.stop_reason) == (RunStatus.BUDGET_EXHAUSTED, StopReason.BUDGET_EXHAUSTED)
    assert out.output == "partial findings" and "output_tokens" in (out.detail or "")
    assert out.result is not None and out.result["exhausted_limit"] == "output_tokens"
    cost = await ledger_cost(ctx.ledger)
    assert cost.total.usage.output_tokens <= 2
    stopped = [d for t, d in await runs.events(rid) if t == "agent.stopped"]
    assert stopped[0]["stop_reason"] == "budget_exhausted"


async def test_critical_budget_asks_for_the_final_answer_without_tools(runs: Runs) -> None:
    engine = SimEngine(
        {
            "mode": "rules",
            "replies": [
                {"when": "level: CRITICAL", "content": "best final answer"},
                {
                    "tool_calls": [
                        {"name": "ls", "arguments": {"path": ""}},
                        {"name": "write", "arguments": {"path": "n.md", "content": "x"}},
                    ]
                },
            ],
        }
    )
    rid, ctx = await runs.start(spec(["fs"], Budget(model_calls=3)), router(engine))
    out = await run_agent(ctx)
    assert (out.status, out.stop_reason, out.output) == (RunStatus.SUCCEEDED, StopReason.END_TURN, "best final answer")
    assert "CRITICAL" in (out.detail or "")
    ev = await runs.events(rid)
    levels = [d["budget_level"] for t, d in ev if t == "agent.message"]
    assert levels == ["HIGH", "MEDIUM", "CRITICAL"]
    finals = [d["final"] for t, d in ev if t == "model.call"]
    assert finals == [False, False, True]
    steps = await runs.store.load_steps(rid)  # the budget block is recorded with the turn
    turn0 = json.loads(steps["turn/0/model"])
    assert turn0["budget"].startswith("<budget>") and "model_calls: used 0 of 3" in turn0["budget"]


async def test_a_used_up_tool_is_reported_and_the_agent_goes_on(runs: Runs) -> None:
    engine = script(
        [call("write", {"path": "a.md", "content": "1"})],
        [call("write", {"path": "b.md", "content": "2"})],
        "done without b",
    )
    rid, ctx = await runs.start(spec(["fs"], Budget(tool_calls={"write": 1})), router(engine))
    out = await run_agent(ctx)
    assert out.output == "done without b" and out.status is RunStatus.SUCCEEDED
    r = tool_results(await runs.events(rid))
    assert not r[0]["is_error"] and r[1]["is_error"] and "tool_calls.write is used up" in r[1]["content"]
    assert ctx.workspace.list() == ["a.md"]


async def test_cancelled_between_turns(runs: Runs) -> None:
    holder: dict[str, str] = {}

    @tool
    async def stop_me(ctx: ToolContext) -> str:
        """Ask for the run to be cancelled (as a user would, from outside)."""
        await runs.store.cancel(holder["rid"], tenant="default")
        return "asked"

    reg = ToolRegistry()
    reg.register(stop_me)
    engine = script([call("stop_me", {})], [call("stop_me", {})], "unreachable")
    rid = await runs.submit(spec(["stop_me"]))
    holder["rid"] = rid
    ctx = await runs.attempt(rid, router(engine))
    out = await run_agent(ctx, registry=reg)
    assert (out.status, out.stop_reason) == (RunStatus.CANCELLED, StopReason.CANCELLED)
    assert engine.calls == 1


async def test_model_error_stops_with_error(runs: Runs) -> None:
    engine = SimEngine({"mode": "echo", "failure_rate": 1.0})
    _, ctx = await runs.start(spec(["fs"]), router(engine))
    out = await run_agent(ctx)
    assert (out.status, out.stop_reason) == (RunStatus.FAILED, StopReason.ERROR)
    assert "simulated engine failure" in (out.detail or "")


async def test_old_tool_results_move_to_the_workspace_near_the_context_window(runs: Runs) -> None:
    big = "\n".join(f"line {n} " + "word " * 12 for n in range(12))
    engine = script(
        [call("read", {"path": "f1.md"})],
        [call("read", {"path": "f2.md"})],
        [call("read", {"path": "f3.md"})],
        "summary written",
    )
    rid = await runs.submit(spec(["read"], max_tokens=64))
    ctx = await runs.attempt(rid, router(engine, window=1000))
    for n in (1, 2, 3):
        ctx.workspace.write(f"f{n}.md", f"file {n}\n" + big)
    await ctx.flush()
    out = await run_agent(ctx)
    assert out.output == "summary written"
    assert out.result is not None and out.result["compacted_results"] >= 1
    moved = [p for p in ctx.workspace.list("logs/tool_results")]
    assert moved and ctx.workspace.read(moved[0]).startswith("f1.md: lines 1-13 of 13")
    steps = await runs.store.load_steps(rid)
    assert any(k.endswith("/compact") for k in steps)
    # the pointer replaced the result in what the model saw last
    last = json.loads(steps["turn/3/model"])
    assert last["content"] == "summary written"


async def test_python_failures_are_tool_errors_and_the_run_goes_on(runs: Runs) -> None:
    reg = ToolRegistry(ToolSettings(python=PythonSettings(cpu_seconds=1, wall_seconds=10)))
    engine = script(
        [
            call("python", {"code": "while True: pass"}),
            call("python", {"code": "import socket; socket.create_connection(('127.0.0.1', 1))"}),
        ],
        [call("python", {"code": "open('out.txt', 'w').write(str(6 * 7))"})],
        "42",
    )
    rid, ctx = await runs.start(spec(["python", "read"]), router(engine))
    out = await run_agent(ctx, registry=reg)
    assert out.output == "42" and out.status is RunStatus.SUCCEEDED
    r = sorted(tool_results(await runs.events(rid)), key=lambda d: (d["turn"], d["index"]))
    assert r[0]["is_error"] and "CPU-time limit" in r[0]["content"]
    assert r[1]["is_error"] and "Connection refused" in r[1]["content"]  # the sandbox's own, empty loopback
    assert not r[2]["is_error"]
    assert (await runs.store.load_workspace(rid))["out.txt"] == b"42"


async def test_answer_ensemble_gives_the_final_answer_over_the_conversation(runs: Runs) -> None:
    """``answer_ensemble``: after the tool loop, the final answer is the ensemble's (one durable
    step), and its inner calls are metered in the agent's answer scope."""
    engine = SimEngine(
        {
            "mode": "rules",
            "replies": [
                {"when": r"^do the task", "tool_calls": [{"name": "ls", "arguments": {}}]},
                # the agent sees the raw tool result; the ensemble sees a flattened, re-prompted conversation
                {"when": r"^(?!\[result of)[^\n]*notes\.md", "content": "agent answer"},
                {"content": "ensemble answer: notes.md holds alpha"},
            ],
        }
    )
    ensemble = {
        "name": "solo",
        "layers": [[{"type": "generator", "model": "sim", "model_type": "conclave", "samples": 1}]],
    }
    rid = await runs.submit(spec(["ls"], answer_ensemble=ensemble))
    ctx = await runs.attempt(rid, router(engine))
    ctx.workspace.write("notes.md", "alpha\n")
    await ctx.flush()
    out = await run_agent(ctx)
    assert out.status is RunStatus.SUCCEEDED, out.detail
    assert out.output == "ensemble answer: notes.md holds alpha"
    steps = await runs.store.load_steps(rid)
    assert "answer/ensemble" in steps
    cost = await ledger_cost(ctx.ledger)
    assert cost.total.usage.model_calls == 3  # two agent turns and the ensemble's one generator call
    assert cost.by_agent["generator#0"].usage.model_calls == 1


async def test_the_budget_block_costs_no_ledger_read_after_the_first_turn(
    runs: Runs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every turn shows the ``<budget>`` block, yet the ledger is read once: later turns take what the
    reservations answered and the run's own commits (issue 15: budget awareness costs no extra call)."""
    engine = script(
        [call("write", {"path": "a.md", "content": "1"})],
        [call("write", {"path": "b.md", "content": "2"})],
        [call("ls", {"path": ""})],
        "done",
    )
    rid, ctx = await runs.start(spec(["fs"], Budget(model_calls=10, tool_calls={"write": 5})), router(engine))
    reads: list[str] = []
    real = ctx.store.ledger_snapshot

    async def counted(run_id: str) -> Any:
        reads.append(run_id)
        return await real(run_id)

    monkeypatch.setattr(ctx.store, "ledger_snapshot", counted)
    out = await run_agent(ctx)
    assert out.output == "done"
    steps = await runs.store.load_steps(rid)
    blocks = [json.loads(steps[f"turn/{i}/model"])["budget"] for i in range(4)]
    assert [(f"model_calls: used {i} of 10") in b for i, b in enumerate(blocks)] == [True] * 4, blocks
    # Turn 1 follows the commit of turn 0's write, whose hold the view turns into usage itself.
    writes = [f"tool_calls.write: used {n} of 5" for n in (0, 1, 2, 2)]
    assert [w in b for w, b in zip(writes, blocks, strict=True)] == [True] * 4, blocks
    assert len(reads) == 1, f"the ledger was read {len(reads)} times for 4 turns"
