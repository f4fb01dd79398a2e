"""Kill a worker mid-run: a new owner resumes the run from its committed steps, the workspace is
intact, and no committed tool call is repeated (side effects counted outside the run)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import pytest

from conclave.agents.loop import run_agent
from conclave.cluster.engines.sim import SimEngine
from conclave.cluster.router import LocalRouter
from conclave.core.store import LeaseLost
from conclave.schema import RunStatus, StopReason, TaskSpec
from conclave.tools import ToolContext, ToolRegistry, tool

from ._runs import Runs

pytestmark = pytest.mark.redis


async def test_a_resumed_run_repeats_no_committed_tool_call(runs: Runs) -> None:
    effects: Counter[str] = Counter()  # idempotency key -> times the side effect happened
    tags: dict[str, str] = {}
    entered = asyncio.Event()
    hang = asyncio.Event()  # never set in the first attempt: the worker "dies" inside this call

    @tool
    async def effect(tag: str, ctx: ToolContext) -> str:
        """A side effect outside the workspace (think: an HTTP POST)."""
        if tag == "d" and not hang.is_set():
            entered.set()
            await asyncio.Event().wait()  # blocks until the task is killed
        effects[ctx.idempotency_key] += 1
        tags[ctx.idempotency_key] = tag
        return f"did {tag}"

    reg = ToolRegistry()
    reg.register(effect)
    replies = [
        {"tool_calls": [{"name": "effect", "arguments": {"tag": "a"}}, {"name": "effect", "arguments": {"tag": "b"}}]},
        {
            "tool_calls": [
                {"name": "effect", "arguments": {"tag": "c"}},
                {"name": "write", "arguments": {"path": "notes.md", "content": "kept"}},
            ]
        },
        {"tool_calls": [{"name": "effect", "arguments": {"tag": "d"}}]},
        {"content": "finished"},
    ]
    engine = SimEngine({"mode": "script", "replies": replies})
    router = LocalRouter({"sim": engine})
    spec = TaskSpec(kind="agent", input="go", model="sim", tools=["effect", "fs"])
    rid = await runs.submit(spec)

    first = await runs.attempt(rid, router, owner="worker-1")
    task = asyncio.ensure_future(run_agent(first, registry=reg))
    await asyncio.wait_for(entered.wait(), 10)
    assert engine.calls == 3 and sorted(tags.values()) == ["a", "b", "c"]

    # worker-1 is presumed dead: another worker claims the run, then worker-1's process goes away
    hang.set()
    second = await runs.attempt(rid, router, owner="worker-2")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, LeaseLost):
        await task
    assert second.resumed and second.attempt == 2
    assert second.workspace.read("notes.md") == "kept"

    out = await run_agent(second, registry=reg)
    assert (out.status, out.stop_reason, out.output) == (RunStatus.SUCCEEDED, StopReason.END_TURN, "finished")
    assert sorted(tags.values()) == ["a", "b", "c", "d"]
    assert set(effects.values()) == {1}, f"a tool call ran twice: {effects}"
    assert engine.calls == 4  # turns 0-2 replayed from their steps, only the last turn called the model
    assert second.steps_replayed == 3 + 4  # three model turns and four committed tool calls
    files = await runs.store.load_workspace(rid)
    assert files == {"notes.md": b"kept"}
    ev = await runs.events(rid)
    done = Counter(d["arguments"] for t, d in ev if t == "tool.call" and d["name"] == "effect")
    assert all(n == 1 for n in done.values()) and len(done) == 4
    assert [t for t, _ in ev].count("run.resumed") == 1
