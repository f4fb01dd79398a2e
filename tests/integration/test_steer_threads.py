"""Threads end to end (real Valkey, HTTP, an in-process worker, the agent loop on a sim model that answers
by rules): follow-ups see the thread's conversation and a copy of its workspace; the multitask policies
reject, enqueue, interrupt and rollback under a running run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from conclave.controller.redis_server import EmbeddedRedis
from conclave.controller.redis_store import RedisRunStore
from conclave.controller.worker import connect

from ._helpers import running_worker
from ._steer import call, events, http_api, settings_for, sim_model, until, wait_for
from .steer_tools import applied

pytestmark = pytest.mark.redis

MODEL = sim_model(
    {"when": "^first: write notes$", "tool_calls": [call("write", path="notes.md", content="alpha")]},
    {"when": "^then: change notes$", "tool_calls": [call("write", path="notes.md", content="beta")]},
    {"when": "^wrote .* to notes.md", "content": "wrote the notes"},
    {"when": "^then: read notes$", "tool_calls": [call("read", path="notes.md")]},
    {"when": "alpha", "content": "the notes say alpha"},
    {
        "when": "^slow: draft$",
        "content": "working on a draft",
        "tool_calls": [call("write", path="draft.md", content="v1"), call("effect", tag="slow")],
    },
    {"when": "^(paid|already paid) slow$", "content": "the draft is done"},
    {"when": "^wrote .* to draft.md", "content": "draft written"},
    {"when": "^q(\\d)$", "content": "answered"},
    {"when": "^stop and summarize$", "content": "summary of what there is"},
    mode="rules",
)
SPEC = {"kind": "agent", "model": "sim", "tools": ["fs", "effect"]}


@pytest.fixture
def effects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "effects"
    d.mkdir()
    monkeypatch.setenv("CONCLAVE_TEST_EFFECTS", str(d))
    return d


@pytest.fixture
async def store(redis_server: EmbeddedRedis, prefix: str) -> Any:
    s = RedisRunStore(connect(redis_server.url), prefix, binary=connect(redis_server.url, decode=False))
    yield s
    await s.close()


async def send(api: httpx.AsyncClient, tid: str, text: str, **kw: Any) -> httpx.Response:
    return await api.post(f"/v1/threads/{tid}/runs", json={"input": text, **kw})


async def context_of(store: RedisRunStore, rid: str) -> list[dict[str, str]]:
    """The conversation the run was given (the recorded value of its thread/context step)."""
    steps = await store.load_steps(rid)
    return json.loads(steps["thread/context"])["messages"]  # type: ignore[no-any-return]


async def test_a_follow_up_sees_the_conversation_and_a_copy_of_the_workspace(
    redis_server: EmbeddedRedis, prefix: str, store: RedisRunStore, effects: Path
) -> None:
    settings = settings_for(prefix, MODEL)
    async with http_api(settings, redis_server.url) as api:
        made = await api.post("/v1/threads", json={"id": "notes", "metadata": {"topic": "notes"}})
        assert made.status_code == 201 and made.json()["multitask"] == "reject"
        assert (await api.post("/v1/threads", json={"id": "notes"})).status_code == 409
        # the first message names the task in full; follow-ups only say what they want
        first = await send(api, "notes", "first: write notes", **SPEC)
        assert first.status_code == 201 and first.json()["result"] == "started", first.text
        a = first.json()["run"]["id"]
        async with running_worker(settings, redis_server.url):
            assert (await until(api, a, "succeeded"))["output"] == "wrote the notes"
            b = (await send(api, "notes", "then: read notes")).json()["run"]["id"]
            done_b = await until(api, b, "succeeded", "failed")
            c = (await send(api, "notes", "then: change notes")).json()["run"]["id"]
            await until(api, c, "succeeded", "failed")
        thread = (await api.get("/v1/threads/notes")).json()
        runs = (await api.get("/v1/threads/notes/runs")).json()["runs"]
        listed = (await api.get("/v1/runs", params={"thread_id": "notes"})).json()["runs"]
        evs = await events(api, b)
        c_run = (await api.get(f"/v1/runs/{c}")).json()
    assert done_b["output"] == "the notes say alpha", "the follow-up read the file the first run wrote"
    assert done_b["spec"]["tools"] == ["fs", "effect"] and done_b["spec"]["thread_id"] == "notes"
    assert await context_of(store, b) == [
        {"role": "user", "content": "first: write notes"},
        {"role": "assistant", "content": "wrote the notes"},
    ]
    assert [m["content"] for m in await context_of(store, c)] == [
        "first: write notes",
        "wrote the notes",
        "then: read notes",
        "the notes say alpha",
    ]
    assert c_run["status"] == "succeeded"
    # copied, not shared: the third run's write left the earlier runs' files as they were
    assert await store.read_file(c, "notes.md") == b"beta"
    assert await store.read_file(a, "notes.md") == b"alpha" and await store.read_file(b, "notes.md") == b"alpha"
    assert thread["runs"] == 3 and thread["active_run"] is None and thread["last_run"] == c
    assert [r["id"] for r in runs] == [a, b, c] and [r["id"] for r in listed] == [c, b, a]
    assert [e["type"] for e in evs[:2]] == ["run.queued", "thread.message"]
    assert evs[1]["data"]["position"] == 2


async def test_reject_refuses_a_message_while_a_run_is_active(
    redis_server: EmbeddedRedis, prefix: str, effects: Path
) -> None:
    settings = settings_for(prefix, MODEL)
    async with http_api(settings, redis_server.url) as api:
        a = (await send(api, "busy", "first: write notes", **SPEC)).status_code
        assert a == 404, "a message needs the thread to exist; a task with thread_id makes it"
        first = await api.post("/v1/runs", json={**SPEC, "input": "first: write notes", "thread_id": "busy"})
        assert first.status_code == 201, first.text
        refused = await send(api, "busy", "then: read notes")
        assert refused.status_code == 409
        err = refused.json()["error"]
        assert err["code"] == "thread_busy" and first.json()["id"] in err["message"]
        also = await api.post("/v1/runs", json={**SPEC, "input": "again", "thread_id": "busy"})
        assert also.status_code == 409
        assert (await api.get("/v1/threads/busy")).json()["runs"] == 1


async def test_three_enqueued_messages_run_one_after_another_in_order(
    redis_server: EmbeddedRedis, prefix: str, store: RedisRunStore, effects: Path
) -> None:
    settings = settings_for(prefix, MODEL)
    (effects / "hold").touch()  # the first run blocks inside its effect call
    async with http_api(settings, redis_server.url) as api:
        await api.post("/v1/threads", json={"id": "line", "multitask": "enqueue"})
        first = (await send(api, "line", "slow: draft", **SPEC)).json()["run"]["id"]
        async with running_worker(settings, redis_server.url):
            await until(api, first, "running")
            later = []
            for i in range(3):
                r = await send(api, "line", f"q{i}")
                assert r.status_code == 201 and r.json()["result"] == "enqueued", r.text
                later.append(r.json()["run"]["id"])
            thread = (await api.get("/v1/threads/line")).json()
            assert thread["active_run"] == first and thread["pending_runs"] == later
            assert [(await api.get(f"/v1/runs/{x}")).json()["status"] for x in later] == ["queued"] * 3
            (effects / "hold").unlink()
            done = [await until(api, x, "succeeded", "failed") for x in later]
    starts = [(await store.events(x))[2] for x in later]  # run.queued, thread.message, run.started
    assert [s.type for s in starts] == ["run.started"] * 3
    assert starts[0].ts < starts[1].ts < starts[2].ts, "each started once the one before it had ended"
    records = [await store.get(x) for x in [first, *later]]
    ends = [r.finished_at for r in records if r]
    begins = [r.started_at for r in records[1:] if r]
    assert all(e is not None and b is not None and e <= b for e, b in zip(ends, begins, strict=False))
    assert [d["status"] for d in done] == ["succeeded"] * 3
    third = [m["content"] for m in await context_of(store, later[2])]
    assert third == ["slow: draft", "the draft is done", "q0", "answered", "q1", "answered"]
    assert len(applied(effects)) == 1


async def test_interrupt_stops_the_running_run_at_its_boundary_and_the_new_one_continues_from_it(
    redis_server: EmbeddedRedis, prefix: str, store: RedisRunStore, effects: Path
) -> None:
    settings = settings_for(prefix, MODEL)
    (effects / "hold").touch()
    async with http_api(settings, redis_server.url) as api:
        await api.post("/v1/threads", json={"id": "int"})
        first = (await send(api, "int", "slow: draft", **SPEC)).json()["run"]["id"]
        async with running_worker(settings, redis_server.url):
            await until(api, first, "running")
            await wait_for(lambda: bool(applied(effects)))  # the effect call is in flight
            r = await send(api, "int", "stop and summarize", multitask="interrupt")
            assert r.status_code == 201 and r.json()["result"] == "interrupting", r.text
            second = r.json()["run"]["id"]
            assert (await api.get(f"/v1/runs/{first}")).json()["pause_requested"] == "interrupt"
            (effects / "hold").unlink()  # the call in flight finishes and commits; then the run stops
            stopped = await until(api, first, "paused", "succeeded", "failed")
            done = await until(api, second, "succeeded", "failed")
            resumed = await api.post(f"/v1/runs/{first}/resume")
        first_events = await events(api, first)
    assert (stopped["status"], stopped["pause_reason"]) == ("paused", "interrupt")
    assert stopped["output"] == "working on a draft", "the partial answer is kept"
    steps = await store.load_steps(first)
    assert "turn/0/tool/1" in steps and "turn/1/model" not in steps, "it stopped at the step boundary"
    assert done["status"] == "succeeded" and done["output"] == "summary of what there is"
    assert [m["content"] for m in await context_of(store, second)] == [
        "slow: draft",
        "working on a draft\n\n(a partial answer: that run was interrupted before it finished)",
    ]
    assert await store.read_file(second, "draft.md") == b"v1", "the new run continues from what it committed"
    assert len(applied(effects)) == 1
    assert resumed.status_code == 409 and resumed.json()["error"]["code"] == "run_superseded"
    types = [e["type"] for e in first_events]
    assert types.index("run.pause_requested") < types.index("run.paused") and "run.finished" not in types


async def test_rollback_cancels_the_running_run_and_the_new_one_starts_from_the_run_before_it(
    redis_server: EmbeddedRedis, prefix: str, store: RedisRunStore, effects: Path
) -> None:
    settings = settings_for(prefix, MODEL)
    async with http_api(settings, redis_server.url) as api:
        await api.post("/v1/threads", json={"id": "rb"})
        base = (await send(api, "rb", "first: write notes", **SPEC)).json()["run"]["id"]
        async with running_worker(settings, redis_server.url):
            await until(api, base, "succeeded")
            (effects / "hold").touch()
            doomed = (await send(api, "rb", "slow: draft")).json()["run"]["id"]
            await until(api, doomed, "running")
            await wait_for(lambda: bool(applied(effects)))  # the effect call is in flight
            r = await send(api, "rb", "then: read notes", multitask="rollback")
            assert r.status_code == 201 and r.json()["result"] == "rolling_back", r.text
            fresh = r.json()["run"]["id"]
            gone = await until(api, doomed, "cancelled", "succeeded", "failed")
            done = await until(api, fresh, "succeeded", "failed")
            (effects / "hold").unlink()
    assert gone["status"] == "cancelled"
    assert await store.read_file(doomed, "draft.md") == b"v1", "the rolled-back run wrote before it was stopped"
    assert done["output"] == "the notes say alpha"
    assert [m["content"] for m in await context_of(store, fresh)] == ["first: write notes", "wrote the notes"]
    files = await store.load_workspace(fresh)
    assert "draft.md" not in files and files["notes.md"] == b"alpha", "its work is not in the new run's workspace"
