"""Forks and pauses end to end (real Valkey, HTTP, an in-process worker): a fork from a middle step replays
the steps before it without running their tools again and leaves the original untouched; a paused run
holds nothing and continues from its checkpoint; a tenant's spent budget pauses runs instead of failing
them."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from conclave.controller.redis_server import EmbeddedRedis
from conclave.controller.redis_store import RedisRunStore
from conclave.controller.worker import connect

from ._helpers import running_worker
from ._steer import call, events, http_api, settings_for, sim_model, until
from .steer_tools import calls

pytestmark = pytest.mark.redis

FOUR_TURNS = sim_model(
    {"content": "step one", "tool_calls": [call("effect", tag="a"), call("write", path="f.md", content="v0")]},
    {"content": "step two", "tool_calls": [call("effect", tag="b"), call("write", path="f.md", content="v1")]},
    {"content": "step three", "tool_calls": [call("effect", tag="c")]},
    {"content": "done"},
)


@pytest.fixture
def effects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "effects"
    d.mkdir()
    monkeypatch.setenv("CONCLAVE_TEST_EFFECTS", str(d))
    return d


async def test_a_fork_from_a_middle_step_replays_it_without_running_its_tools_and_leaves_the_original(
    redis_server: EmbeddedRedis, prefix: str, effects: Path
) -> None:
    settings = settings_for(prefix, FOUR_TURNS)
    store = RedisRunStore(connect(redis_server.url), prefix, binary=connect(redis_server.url, decode=False))
    async with http_api(settings, redis_server.url) as api:
        spec = {"kind": "agent", "input": "the task", "model": "sim", "tools": ["fs", "effect"]}
        src = (await api.post("/v1/runs", json=spec)).json()["id"]
        async with running_worker(settings, redis_server.url):
            original = await until(api, src, "succeeded", "failed")
            listing = (await api.get(f"/v1/runs/{src}/steps")).json()
            before = (await events(api, src), await store.load_steps(src), await store.load_workspace(src))
            keys = [s["key"] for s in listing["steps"]]
            assert keys[0] == "turn/0/model" and set(keys[1:3]) == {"turn/0/tool/0", "turn/0/tool/1"}
            assert keys[3] == "turn/1/model" and keys[-1] == "stopped", keys
            bad = await api.post(f"/v1/runs/{src}/fork", json={"step_key": "turn/9/model"})
            forked = await api.post(
                f"/v1/runs/{src}/fork", json={"step_key": "turn/1/tool/1", "input": "the task, differently"}
            )
            assert forked.status_code == 201, forked.text
            fid = forked.json()["id"]
            fork = await until(api, fid, "succeeded", "failed")
        fork_events = await events(api, fid)
        after = (await events(api, src), await store.load_steps(src), await store.load_workspace(src))
    await store.close()
    assert original["status"] == "succeeded" and fork["status"] == "succeeded" and fork["output"] == "done"
    assert listing["status"] == "succeeded" and [s["index"] for s in listing["steps"]] == list(range(len(keys)))
    ids = [s["event_id"] for s in listing["steps"]]
    assert ids == sorted(ids), "each step's last event id grows with commit order"
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "step_key"
    assert "turn/1/tool/1" in bad.json()["error"]["message"]
    assert fork["forked_from"] == src and fork["fork_step"] == "turn/1/tool/1"
    assert fork["spec"]["input"] == "the task, differently"
    # the tools of the steps before the fork point ran once, in the original; only turn 2's ran again
    tags = sorted(tag for _, tag in calls(effects))
    assert tags == ["a", "b", "c", "c"], tags
    # the fork's stream: what it took over, marked replayed, then its own work
    assert fork_events[0]["type"] == "run.queued" and fork_events[0]["data"]["forked_from"] == src
    started = next(i for i, e in enumerate(fork_events) if e["type"] == "run.started")
    replayed, own = fork_events[1:started], fork_events[started + 1 :]
    assert replayed and all(e["data"]["replayed"]["run"] == src for e in replayed)
    assert [e["data"]["name"] for e in replayed if e["type"] == "tool.call"] == ["effect", "write", "effect", "write"]
    assert not any("replayed" in e["data"] for e in own)
    assert [e["data"]["name"] for e in own if e["type"] == "tool.call"] == ["effect"]
    assert after == before, "the original is untouched"
    assert before[2]["f.md"] == b"v1"


async def test_a_paused_run_holds_nothing_and_resumes_from_its_checkpoint(
    redis_server: EmbeddedRedis, redis: Redis, prefix: str
) -> None:
    settings = settings_for(prefix, sim_model({"content": "x"}))
    store = RedisRunStore(connect(redis_server.url), prefix, binary=connect(redis_server.url, decode=False))
    n = 8
    async with http_api(settings, redis_server.url) as api:
        queued = (await api.post("/v1/runs", json={"kind": "steps", "input": "x", "options": {"n": 1}})).json()["id"]
        early = await api.post(f"/v1/runs/{queued}/pause")
        assert early.status_code == 202 and early.json()["result"] == "paused"
        rid = await api.post("/v1/runs", json={"kind": "steps", "input": "x", "options": {"n": n, "sleep": 0.2}})
        rid = rid.json()["id"]
        async with running_worker(settings, redis_server.url):
            await until(api, rid, "running")
            seen, last = 0, 0
            while seen < 2:  # two steps committed
                for e in await store.events(rid, after=last, block_ms=1000):
                    last, seen = e.id, seen + (e.type == "log")
            r = await api.post(f"/v1/runs/{rid}/pause")
            assert r.status_code == 202 and r.json()["result"] == "pausing", r.text
            paused = await until(api, rid, "paused", "succeeded")
            depth = await store.queue_depth()
            again = await api.post(f"/v1/runs/{rid}/resume")
            done = await until(api, rid, "succeeded", "failed")
            assert (await api.post(f"/v1/runs/{queued}/resume")).json()["result"] == "resumed"
            await until(api, queued, "succeeded")
        refused = await api.post(f"/v1/runs/{rid}/pause")
        not_paused = await api.post(f"/v1/runs/{rid}/resume")
        evs = [e.type for e in await store.events(rid)]
    await store.close()
    assert (paused["status"], paused["pause_reason"]) == ("paused", "user")
    assert depth.in_flight == 0, "a paused run's queue entry is acknowledged: no worker holds it"
    assert again.status_code == 202 and again.json()["result"] == "resumed"
    assert done["status"] == "succeeded" and done["output"] == f"sum={sum(i * i for i in range(n))}"
    counts = [int(await redis.get(f"{prefix}:test:count:{rid}:{i}") or 0) for i in range(n)]
    assert counts == [1] * n, f"no committed step ran twice: {counts}"
    assert evs.index("run.pause_requested") < evs.index("run.paused") < evs.index("run.resumed")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "run_ended"
    assert not_paused.status_code == 409 and "not paused" in not_paused.json()["error"]["message"]


async def test_a_spent_tenant_budget_pauses_the_run_and_it_resumes_by_itself_when_raised(
    redis_server: EmbeddedRedis, redis: Redis, prefix: str
) -> None:
    settings = settings_for(prefix, sim_model({"content": "x"}))
    async with http_api(settings, redis_server.url) as api:
        cap = await api.put("/v1/admin/tenants/default/budget", json={"periods": {"none": {"model_calls": 2}}})
        assert cap.status_code == 200, cap.text
        spec = {"kind": "steps", "input": "x", "model": "sim", "options": {"n": 4, "model_calls": True}}
        rid = (await api.post("/v1/runs", json=spec)).json()["id"]
        async with running_worker(settings, redis_server.url):
            paused = await until(api, rid, "paused", "succeeded", "failed", "budget_exhausted")
            raised = await api.put("/v1/admin/tenants/default/budget", json={"periods": {"none": {"model_calls": 10}}})
            assert raised.status_code == 200, raised.text
            # Raising the cap resumes the runs it paused; nobody has to call resume (a manual one
            # now finds the run no longer paused).
            again = await api.post(f"/v1/runs/{rid}/resume")
            done = await until(api, rid, "succeeded", "failed", "budget_exhausted")
    assert (paused["status"], paused["pause_reason"]) == ("paused", "tenant_budget"), paused
    assert done["status"] == "succeeded" and done["usage"]["model_calls"] == 4
    assert again.status_code == 409 and "not paused" in again.json()["error"]["message"], again.text
