"""Kill a worker mid-run: a new owner resumes the run from its committed steps, the workspace is
intact, and no committed tool call is repeated (side effects counted outside the run)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter

import pytest

from conclave.agents.loop import run_agent
from conclave.cluster.engines.sim import SimEngine
from conclave.cluster.router import LocalRouter
from conclave.core.store import LeaseLost
from conclave.schema import RunStatus, StopReason, TaskSpec
from conclave.schema.chat import ChatRequest, ChatResponse
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


class _RecordingRouter(LocalRouter):
    """The in-process router, keeping every request it was given (what the model saw)."""

    def __init__(self, engine: SimEngine, window: int) -> None:
        super().__init__({"sim": engine}, {"sim": window})
        self.requests: list[ChatRequest] = []

    async def chat(self, model: str, request: ChatRequest) -> ChatResponse:
        self.requests.append(request)
        return await super().chat(model, request)


async def test_a_resumed_run_rebuilds_the_same_conversation_as_the_uninterrupted_one(runs: Runs) -> None:
    """Turns, tool results and a compaction replayed from their steps give the model the same
    conversation, message for message, as the run that never stopped."""
    entered = asyncio.Event()
    hang = asyncio.Event()

    @tool
    async def big(tag: str) -> str:
        """A long result (it is compacted later)."""
        if tag == "d" and not hang.is_set():
            entered.set()
            await asyncio.Event().wait()
        return f"result {tag}\n" + "\n".join(f"line {n} of {tag}: " + "word " * 12 for n in range(14))

    reg = ToolRegistry()
    reg.register(big)
    replies = [{"tool_calls": [{"name": "big", "arguments": {"tag": t}}]} for t in "abcd"] + [{"content": "done"}]
    spec = TaskSpec(kind="agent", input="go", model="sim", tools=["big"], options={"max_tokens": 64})

    # the run that never stops
    hang.set()
    whole = _RecordingRouter(SimEngine({"mode": "script", "replies": replies}), window=1000)
    whole_rid = await runs.submit(spec)
    out = await run_agent(await runs.attempt(whole_rid, whole), registry=reg)
    assert (out.status, out.output) == (RunStatus.SUCCEEDED, "done")
    assert out.result is not None and out.result["compacted_results"] >= 1

    # the run whose worker dies inside turn 3's tool call, after a compaction committed
    hang.clear()
    crashed = _RecordingRouter(SimEngine({"mode": "script", "replies": replies}), window=1000)
    rid = await runs.submit(spec)
    task = asyncio.ensure_future(run_agent(await runs.attempt(rid, crashed, owner="worker-1"), registry=reg))
    await asyncio.wait_for(entered.wait(), 10)
    hang.set()
    second = await runs.attempt(rid, crashed, owner="worker-2")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, LeaseLost):
        await task
    assert any(k.endswith("/compact") for k in second.step_keys()), "no compaction to replay"
    out2 = await run_agent(second, registry=reg)
    assert (out2.status, out2.output) == (RunStatus.SUCCEEDED, "done")
    assert len(crashed.requests) == len(whole.requests) == 5  # the resumed attempt made only the last call
    assert _normalized(crashed.requests[-1]) == _normalized(whole.requests[-1])
    # the same steps, and the same results moved by each compaction (a replay that lost a compaction
    # would move them again later)
    steps, whole_steps = await runs.store.load_steps(rid), await runs.store.load_steps(whole_rid)
    assert sorted(steps) == sorted(whole_steps)
    moved = {k: len(json.loads(v)) for k, v in steps.items() if k.endswith("/compact")}
    assert moved and moved == {k: len(json.loads(v)) for k, v in whole_steps.items() if k.endswith("/compact")}


def _normalized(request: ChatRequest) -> str:
    """The request as JSON with the sim's random tool-call ids (and the archive names made of them)
    replaced by their order of appearance: the model's choice of ids is the one thing that differs."""
    text = request.model_dump_json()
    ids = [c.id for m in request.messages for c in m.tool_calls or []]
    for k, cid in enumerate(ids):
        text = text.replace(cid, f"call-{k}").replace(cid[-8:], f"suffix-{k}")
    return text
