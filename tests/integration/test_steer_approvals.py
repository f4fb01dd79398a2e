"""Human approval of tool calls, end to end: real Valkey, the HTTP API on 127.0.0.1, real workers (worker
processes where a test kills them with SIGKILL), the agent loop on a scripted sim model, and a tool whose
side effect is counted outside the run (``steer_tools.effect``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from conclave.controller.redis_server import EmbeddedRedis

from ._helpers import running_worker
from ._steer import call, events, http_api, kill, settings_for, sim_model, until, wait_for, worker_process
from .steer_tools import applied, calls

pytestmark = pytest.mark.redis

PAY = {
    "kind": "agent",
    "input": "pay invoice 7",
    "model": "sim",
    "tools": ["effect"],
    "approval": {"effect": "always"},
}


@pytest.fixture
def effects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "effects"
    d.mkdir()
    monkeypatch.setenv("CONCLAVE_TEST_EFFECTS", str(d))
    return d


def pay_model(**options: object) -> dict[str, object]:
    return sim_model({"tool_calls": [call("effect", tag="invoice-7")]}, {"content": "paid and done"}, **options)


async def pending(api: httpx.AsyncClient) -> list[dict[str, object]]:
    r = await api.get("/v1/approvals", params={"status": "pending"})
    assert r.status_code == 200, r.text
    return r.json()["approvals"]  # type: ignore[no-any-return]


async def test_an_approved_call_runs_once_across_worker_kills_while_waiting_and_right_after_approval(
    redis_server: EmbeddedRedis, prefix: str, tmp_path: Path, effects: Path
) -> None:
    model = pay_model()
    async with http_api(settings_for(prefix, model), redis_server.url) as api:
        rid = (await api.post("/v1/runs", json=PAY)).json()["id"]
        with worker_process(redis_server.url, prefix, "w1", tmp_path, model, effects) as w1:
            run = await until(api, rid, "waiting")
            (approval,) = await pending(api)
            kill(w1)  # SIGKILL while the run waits: it held nothing
        assert run["attempts"] == 1 and calls(effects) == []
        assert approval["tool"] == "effect" and approval["arguments"] == {"tag": "invoice-7"}
        assert approval["reserve"]["tool:effect"] == 1 and approval["status"] == "pending"
        assert approval["step_key"] == "turn/0/tool/0"

        (effects / "hold").touch()  # the next execution blocks right after paying: the worker dies there
        decided = await api.post(
            f"/v1/runs/{rid}/approvals", json={"approval_id": approval["id"], "decision": "approve"}
        )
        assert decided.status_code == 200, decided.text
        assert decided.json()["approval"]["status"] == "approved" and decided.json()["run"]["status"] == "queued"
        with worker_process(redis_server.url, prefix, "w2", tmp_path, model, effects) as w2:
            await wait_for(lambda: len(calls(effects)) == 1)
            kill(w2)  # right after the approved call paid, before its step committed
        (effects / "hold").unlink()
        with worker_process(redis_server.url, prefix, "w3", tmp_path, model, effects):
            done = await until(api, rid, "succeeded", "failed", "cancelled", "budget_exhausted", within=90)
        evs = await events(api, rid)
    assert done["status"] == "succeeded" and done["output"] == "paid and done", done
    assert len(applied(effects)) == 1, "the approved payment happened exactly once"
    keys = {k for k, _ in calls(effects)}
    assert len(keys) == 1 and len(calls(effects)) == 2, "the retried execution carried the same idempotency key"
    types = [e["type"] for e in evs]
    assert types.count("approval.requested") == 1 and types.count("approval.resolved") == 1
    assert types.count("run.waiting") == 1
    results = [e["data"] for e in evs if e["type"] == "tool.result"]
    assert len(results) == 1 and "invoice-7" in results[0]["content"], "one committed step for the call"
    ids = [e["id"] for e in evs]
    assert ids == list(range(1, len(ids) + 1))


async def test_an_approved_call_whose_step_committed_is_not_run_again_after_a_kill(
    redis_server: EmbeddedRedis, prefix: str, tmp_path: Path, effects: Path
) -> None:
    model = pay_model(latency_s=1.5)  # room to kill the worker between the call and the next model turn
    async with http_api(settings_for(prefix, model), redis_server.url) as api:
        rid = (await api.post("/v1/runs", json=PAY)).json()["id"]
        with worker_process(redis_server.url, prefix, "w1", tmp_path, model, effects) as w1:
            await until(api, rid, "waiting")
            (approval,) = await pending(api)
            await api.post(f"/v1/runs/{rid}/approvals", json={"approval_id": approval["id"], "decision": "approve"})

            async def committed() -> bool:
                return any(e["type"] == "tool.result" for e in await events(api, rid))

            await wait_for(committed)
            kill(w1)  # the call's step has committed; the next model turn is in flight
        assert (await api.get(f"/v1/runs/{rid}")).json()["status"] == "running"
        with worker_process(redis_server.url, prefix, "w2", tmp_path, model, effects):
            done = await until(api, rid, "succeeded", "failed", within=90)
    assert done["status"] == "succeeded" and done["attempts"] == 3
    assert len(calls(effects)) == 1 and len(applied(effects)) == 1, "a committed call is replayed, never run again"


async def test_two_approvals_at_once_one_wins_and_the_other_gets_409(
    redis_server: EmbeddedRedis, prefix: str, effects: Path
) -> None:
    settings = settings_for(prefix, pay_model())
    async with http_api(settings, redis_server.url) as api:
        rid = (await api.post("/v1/runs", json=PAY)).json()["id"]
        async with running_worker(settings, redis_server.url):
            await until(api, rid, "waiting")
            (approval,) = await pending(api)
            url = f"/v1/runs/{rid}/approvals"
            answers = await asyncio.gather(
                *(
                    api.post(url, json={"approval_id": approval["id"], "decision": d, "reason": f"person {i}"})
                    for i, d in enumerate(["approve", "deny", "approve", "deny"])
                )
            )
            done = await until(api, rid, "succeeded", "failed")
        evs = await events(api, rid)
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 409, 409, 409], [a.text for a in answers]
    loser = next(a for a in answers if a.status_code == 409).json()["error"]
    assert loser["code"] == "approval_decided" and "already decided" in loser["message"]
    winner = next(a for a in answers if a.status_code == 200).json()["approval"]
    assert [e["type"] for e in evs].count("approval.resolved") == 1
    assert len(applied(effects)) == (1 if winner["status"] == "approved" else 0)
    assert done["status"] == "succeeded"


async def test_a_decision_for_a_run_that_is_not_waiting_is_409(
    redis_server: EmbeddedRedis, prefix: str, effects: Path
) -> None:
    settings = settings_for(prefix, sim_model({"content": "nothing to approve"}))
    async with http_api(settings, redis_server.url) as api:
        rid = (await api.post("/v1/runs", json=PAY)).json()["id"]
        r = await api.post(f"/v1/runs/{rid}/approvals", json={"approval_id": "apr_x", "decision": "approve"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "run_not_waiting"
        assert f"run {rid} is queued: it waits for no decision" in r.json()["error"]["message"]
        async with running_worker(settings, redis_server.url):
            await until(api, rid, "succeeded")
        r = await api.post(f"/v1/runs/{rid}/approvals", json={"approval_id": "apr_x", "decision": "deny"})
        assert r.status_code == 409 and "is succeeded" in r.json()["error"]["message"]
        missing = await api.post("/v1/runs/run_nope/approvals", json={"approval_id": "apr_x", "decision": "deny"})
        assert missing.status_code == 404


async def test_a_bad_edit_is_422_naming_the_field_and_a_good_one_runs_with_the_new_arguments(
    redis_server: EmbeddedRedis, prefix: str, effects: Path
) -> None:
    settings = settings_for(prefix, pay_model())
    async with http_api(settings, redis_server.url) as api:
        rid = (await api.post("/v1/runs", json=PAY)).json()["id"]
        async with running_worker(settings, redis_server.url):
            await until(api, rid, "waiting")
            (approval,) = await pending(api)
            url = f"/v1/runs/{rid}/approvals"
            wrong_type = await api.post(
                url, json={"approval_id": approval["id"], "decision": "edit", "arguments": {"tag": 7}}
            )
            missing = await api.post(url, json={"approval_id": approval["id"], "decision": "edit", "arguments": {}})
            extra = await api.post(
                url, json={"approval_id": approval["id"], "decision": "edit", "arguments": {"tag": "a", "x": 1}}
            )
            no_args = await api.post(url, json={"approval_id": approval["id"], "decision": "edit"})
            assert (await pending(api))[0]["id"] == approval["id"], "a refused edit decides nothing"
            good = await api.post(
                url, json={"approval_id": approval["id"], "decision": "edit", "arguments": {"tag": "invoice-8"}}
            )
            done = await until(api, rid, "succeeded", "failed")
    for bad, name in ((wrong_type, "arguments.tag"), (missing, "arguments.tag"), (extra, "arguments")):
        assert bad.status_code == 422, bad.text
        assert bad.json()["error"]["details"][0]["field"] == name, bad.text
    assert no_args.status_code == 422 and "arguments" in no_args.text
    assert good.status_code == 200 and good.json()["approval"]["status"] == "edited"
    assert done["status"] == "succeeded"
    assert list(applied(effects).values()) == ["invoice-8"], "the call ran with the person's arguments"


async def test_a_denied_call_does_not_run_and_the_model_reads_the_reason(
    redis_server: EmbeddedRedis, prefix: str, effects: Path
) -> None:
    settings = settings_for(prefix, pay_model())
    async with http_api(settings, redis_server.url) as api:
        rid = (await api.post("/v1/runs", json=PAY)).json()["id"]
        async with running_worker(settings, redis_server.url):
            await until(api, rid, "waiting")
            (approval,) = await pending(api)
            r = await api.post(
                f"/v1/runs/{rid}/approvals",
                json={"approval_id": approval["id"], "decision": "deny", "reason": "invoice 7 is disputed"},
            )
            assert r.status_code == 200
            done = await until(api, rid, "succeeded", "failed")
        evs = await events(api, rid)
    assert calls(effects) == [] and done["status"] == "succeeded"
    (result,) = [e["data"] for e in evs if e["type"] == "tool.result"]
    assert result["is_error"] and "denied" in result["content"] and "invoice 7 is disputed" in result["content"]


async def test_ask_human_waits_and_the_answer_is_the_tool_result(redis_server: EmbeddedRedis, prefix: str) -> None:
    model = sim_model(
        {"tool_calls": [call("ask_human", question="Which year should the report cover?")]},
        {"content": "covering the year you chose"},
    )
    settings = settings_for(prefix, model)
    async with http_api(settings, redis_server.url) as api:
        rid = (
            await api.post(
                "/v1/runs", json={"kind": "agent", "input": "write the report", "model": "sim", "tools": ["ask_human"]}
            )
        ).json()["id"]
        async with running_worker(settings, redis_server.url):
            await until(api, rid, "waiting")
            (q,) = await pending(api)
            assert q["kind"] == "question" and q["arguments"]["question"].startswith("Which year")
            url = f"/v1/runs/{rid}/approvals"
            empty = await api.post(url, json={"approval_id": q["id"], "decision": "approve"})
            assert empty.status_code == 422 and empty.json()["error"]["details"][0]["field"] == "answer"
            r = await api.post(url, json={"approval_id": q["id"], "decision": "approve", "answer": "2023"})
            assert r.status_code == 200 and r.json()["approval"]["answer"] == "2023"
            done = await until(api, rid, "succeeded", "failed")
        evs = await events(api, rid)
    (result,) = [e["data"] for e in evs if e["type"] == "tool.result"]
    assert result["content"] == "2023" and not result["is_error"]
    assert done["status"] == "succeeded"


@pytest.mark.parametrize("policy", ["deny", "fail"])
async def test_a_call_nobody_decides_in_time_is_denied_or_fails_the_run(
    redis_server: EmbeddedRedis, prefix: str, effects: Path, policy: str
) -> None:
    settings = settings_for(prefix, pay_model())
    spec = {**PAY, "approval_timeout_s": 0.5, "approval_on_timeout": policy}
    async with http_api(settings, redis_server.url) as api:
        rid = (await api.post("/v1/runs", json=spec)).json()["id"]
        async with running_worker(settings, redis_server.url):
            await until(api, rid, "waiting")
            done = await until(api, rid, "succeeded", "failed", within=30)
        (approval,) = (await api.get(f"/v1/runs/{rid}/approvals")).json()["approvals"]
        evs = await events(api, rid)
    assert approval["status"] == "expired" and "no decision within 0.5 s" in approval["reason"]
    assert calls(effects) == []
    if policy == "deny":
        assert done["status"] == "succeeded"
        (result,) = [e["data"] for e in evs if e["type"] == "tool.result"]
        assert result["is_error"] and "no one approved this call" in result["content"]
    else:
        assert (done["status"], done["stop_reason"]) == ("failed", "approval_timeout")
        assert evs[-1]["type"] == "run.finished"


async def test_another_tenant_sees_no_run_and_no_approval(
    redis_server: EmbeddedRedis, prefix: str, effects: Path
) -> None:
    settings = settings_for(prefix, pay_model(), auth=True, admin_key="boot-secret")
    async with http_api(settings, redis_server.url) as api:
        admin = {"Authorization": "Bearer boot-secret"}
        keys = {}
        for t in ("acme", "rival"):
            made = await api.post("/v1/admin/keys", json={"tenant": t, "name": t}, headers=admin)
            keys[t] = {"Authorization": f"Bearer {made.json()['key']}"}
        rid = (await api.post("/v1/runs", json=PAY, headers=keys["acme"])).json()["id"]
        async with running_worker(settings, redis_server.url):

            async def waiting() -> bool:
                return bool((await api.get(f"/v1/runs/{rid}", headers=keys["acme"])).json()["status"] == "waiting")

            await wait_for(waiting)
            mine = (await api.get("/v1/approvals", params={"status": "pending"}, headers=keys["acme"])).json()
            theirs = (await api.get("/v1/approvals", params={"status": "pending"}, headers=keys["rival"])).json()
            aid = mine["approvals"][0]["id"]
            body = {"approval_id": aid, "decision": "approve"}
            assert theirs == {"approvals": []}
            for method, path, json in (
                ("GET", f"/v1/runs/{rid}/approvals", None),
                ("POST", f"/v1/runs/{rid}/approvals", body),
                ("POST", f"/v1/runs/{rid}/pause", None),
                ("POST", f"/v1/runs/{rid}/resume", None),
                ("GET", f"/v1/runs/{rid}/steps", None),
                ("POST", f"/v1/runs/{rid}/fork", {"step_key": "turn/0/model"}),
            ):
                r = await api.request(method, path, json=json, headers=keys["rival"])
                assert r.status_code == 404, (method, path, r.text)
            ok = await api.post(f"/v1/runs/{rid}/approvals", json=body, headers=keys["acme"])
            assert ok.status_code == 200
