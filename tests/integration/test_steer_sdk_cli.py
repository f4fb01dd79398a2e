"""Steering from the SDK (sync and async) and the CLI, against the HTTP API and an in-process worker:
``client.threads``, ``client.approvals``, ``client.runs.pause/resume/steps/fork``, and ``conclave submit
--follow`` answering an approval prompt read from stdin."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conclave.api.app import create_app
from conclave.controller.redis_server import EmbeddedRedis
from conclave.sdk import AsyncClient, Client, Conflict, ValidationError

from ._helpers import running_worker, serve_http
from ._steer import call, settings_for, sim_model
from .steer_tools import applied

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]
MODEL = sim_model(
    {"when": "^pay$", "tool_calls": [call("effect", tag="invoice-9")]},
    {"when": "paid invoice-9", "content": "paid"},
    {"when": "^ask$", "tool_calls": [call("ask_human", question="Which invoice?")]},
    {"when": "^\\d+$", "content": "ok, that one"},
    {"when": "denied", "content": "not paid"},
    {"when": ".*", "content": "hello there"},
    mode="rules",
)
PAY = {"kind": "agent", "input": "pay", "model": "sim", "tools": ["effect"], "approval": {"effect": "always"}}


@pytest.fixture
def effects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "effects"
    d.mkdir()
    monkeypatch.setenv("CONCLAVE_TEST_EFFECTS", str(d))
    return d


def _wait_status(c: Client, rid: str, *statuses: str) -> str:
    for _ in range(600):
        s = c.runs.get(rid).status.value
        if s in statuses:
            return s
        time.sleep(0.05)
    raise AssertionError(f"{rid} never reached {statuses}")


def _sync_session(base: str) -> dict[str, object]:
    """Everything the sync client can steer, in one go (run in a thread: it blocks)."""
    seen: dict[str, object] = {}
    with Client(base) as c:
        th = c.threads.create("inv", multitask="enqueue", metadata={"team": "ap"})
        seen["created"] = (th.id, th.multitask.value, th.metadata)
        first = c.threads.send("inv", "pay", **{k: v for k, v in PAY.items() if k != "input"}).run
        assert _wait_status(c, first.id, "waiting") == "waiting"
        (a,) = c.approvals.list(status="pending")
        try:
            c.approvals.decide(first.id, a.id, "edit", arguments={"tag": 9})
        except ValidationError as e:
            seen["bad_edit_field"] = e.details[0]["field"]
        res = c.approvals.decide(first.id, a.id, "approve")
        seen["decided"] = res.approval.status.value
        try:
            c.approvals.decide(first.id, a.id, "deny")
        except Conflict as e:
            seen["second"] = e.code
        seen["first_done"] = c.runs.wait(first.id, timeout=60).output
        nxt = c.threads.send("inv", "hi")
        seen["follow_up"] = (nxt.result, c.runs.wait(nxt.run.id, timeout=60).output)
        seen["thread_runs"] = [r.id for r in c.threads.runs("inv")] == [first.id, nxt.run.id]
        seen["listed"] = [r.id for r in c.runs.list(thread_id="inv").runs] == [nxt.run.id, first.id]
        seen["threads"] = [t.id for t in c.threads.list().threads]
        steps = c.runs.steps(first.id).steps
        seen["steps"] = [s.key for s in steps][:2]
        fork = c.runs.fork(first.id, "turn/0/tool/0", input="pay again")
        seen["fork"] = (fork.forked_from, c.runs.wait(fork.id, timeout=60).status.value)
        slow = c.runs.submit({"kind": "steps", "input": "x", "options": {"n": 20, "sleep": 0.1}})
        c.runs.pause(slow.id)  # queued: paused at once; running: at its next step boundary
        seen["paused"] = _wait_status(c, slow.id, "paused")
        seen["resumed"] = c.runs.resume(slow.id).status.value
        seen["slow_done"] = c.runs.wait(slow.id, timeout=60).status.value
    return seen


async def test_the_sync_and_async_clients_steer_runs_threads_and_approvals(
    redis_server: EmbeddedRedis, prefix: str, effects: Path
) -> None:
    settings = settings_for(prefix, MODEL)
    with serve_http(create_app(settings, redis_server.url)) as base:
        async with running_worker(settings, redis_server.url):
            seen = await asyncio.to_thread(_sync_session, base)
            async with AsyncClient(base) as ac:
                t = await ac.threads.create(multitask="reject")
                sent = await ac.threads.send(t.id, "ask", kind="agent", model="sim", tools=["ask_human"])
                for _ in range(600):
                    if (await ac.runs.get(sent.run.id)).status.value == "waiting":
                        break
                    await asyncio.sleep(0.05)
                (q,) = await ac.approvals.list(run_id=sent.run.id, status="pending")
                answered = await ac.approvals.decide(sent.run.id, q.id, "approve", answer="42")
                done = await ac.runs.wait(sent.run.id, timeout=60)
                steps = await ac.runs.steps(sent.run.id)
                got = await ac.threads.get(t.id)
    assert seen["created"] == ("inv", "enqueue", {"team": "ap"})
    assert seen["bad_edit_field"] == "arguments.tag" and seen["decided"] == "approved"
    assert seen["second"] == "approval_decided" and seen["first_done"] == "paid"
    assert seen["follow_up"] == ("started", "hello there")
    assert seen["thread_runs"] and seen["listed"] and "inv" in seen["threads"]  # type: ignore[operator]
    assert seen["steps"] == ["thread/context", "turn/0/model"]
    assert seen["fork"][1] == "succeeded"  # type: ignore[index]
    assert (seen["paused"], seen["slow_done"]) == ("paused", "succeeded")
    assert seen["resumed"] in ("queued", "running"), "back on the queue (a worker may have taken it already)"
    assert answered.approval.answer == "42" and done.output == "ok, that one" and got.runs == 1
    assert [s.key for s in steps.steps][:1] == ["thread/context"]
    assert len(applied(effects)) == 1, "the fork took the payment over; it did not pay again"


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conclave.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
        cwd=ROOT,
    )


async def test_submit_follow_asks_for_the_approval_on_the_terminal(
    redis_server: EmbeddedRedis, prefix: str, effects: Path
) -> None:
    settings = settings_for(prefix, MODEL)
    with serve_http(create_app(settings, redis_server.url)) as base:
        async with running_worker(settings, redis_server.url):
            common = ["submit", "pay", "--kind", "agent", "--model", "sim", "--tools", "effect", "--url", base]
            yes = await asyncio.to_thread(_cli, *common, "--approve", "effect", "--follow", stdin="a\n")
            no = await asyncio.to_thread(_cli, *common, "--approve", "effect", "--follow", stdin="d\ntoo much\n")
            gone = await asyncio.to_thread(_cli, *common, "--approve", "effect", "--follow", "--json", stdin="")
            waiting = json.loads(gone.stdout)
            listed = await asyncio.to_thread(_cli, "approvals", "list", "--url", base, "--json")
            aid = json.loads(listed.stdout)[0]["id"]
            ok = await asyncio.to_thread(_cli, "approvals", "deny", waiting["id"], aid, "--reason", "no", "--url", base)
            again = await asyncio.to_thread(_cli, "approvals", "approve", waiting["id"], aid, "--url", base)
            steps = await asyncio.to_thread(_cli, "runs", "steps", waiting["id"], "--url", base, "--json")
    assert yes.returncode == 0, yes.stdout + yes.stderr
    assert "waits: effect" in yes.stderr and "approved" in yes.stderr and "paid" in yes.stdout
    assert no.returncode == 0 and "denied" in no.stderr and "not paid" in no.stdout
    assert gone.returncode == 1 and waiting["status"] == "waiting" and "approvals list" in gone.stderr
    assert ok.returncode == 0 and "denied" in ok.stdout
    assert again.returncode == 6 and "already decided" in again.stderr
    assert steps.returncode == 0 and json.loads(steps.stdout)["steps"][0]["key"] == "turn/0/model"
    assert len(applied(effects)) == 1, "only the approved call paid"
