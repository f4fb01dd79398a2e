"""The SDK, API keys with tenants, and the CLI against a live local API (uvicorn on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from redis.asyncio import Redis

from conclave import AsyncClient, Client
from conclave.api.app import create_app
from conclave.controller.redis_server import EmbeddedRedis, free_port
from conclave.sdk import BudgetExceeded, ConclaveError, NotFound, Unauthorized, ValidationError

from ._helpers import running_worker, serve_http, sim_settings

ROOT = Path(__file__).resolve().parents[2]


async def test_sync_client_every_method(redis_server: EmbeddedRedis, prefix: str) -> None:
    settings = sim_settings(prefix)
    with serve_http(create_app(settings, redis_server.url)) as base:
        async with running_worker(settings, redis_server.url):

            def use() -> None:
                with Client(base) as c:
                    run = c.runs.submit({"kind": "chat", "input": "sdk says hi"}, idempotency_key="sdk-1")
                    again = c.runs.submit({"kind": "chat", "input": "sdk says hi"}, idempotency_key="sdk-1")
                    assert again.id == run.id
                    done = c.runs.wait(run.id, timeout=30)
                    assert done.status.value == "succeeded" and "sdk says hi" in (done.output or "")
                    assert c.runs.get(run.id).id == run.id
                    assert run.id in [r.id for r in c.runs.list(status="succeeded").runs]
                    events = list(c.runs.events(run.id))
                    assert [e.id for e in events] == list(range(1, len(events) + 1))
                    assert events[-1].type == "run.finished"
                    assert c.runs.cost(run.id).by_model["sim"].usage.model_calls == 1
                    assert "sdk says hi" in c.runs.report(run.id)
                    cancelled = c.runs.cancel(run.id)
                    assert cancelled.status.value == "succeeded"  # finished runs stay as they are
                    with pytest.raises(NotFound):
                        c.runs.get("run_nope")
                    tight = c.runs.submit(
                        {
                            "kind": "steps",
                            "input": "x",
                            "model": "sim",
                            "options": {"n": 2, "model_calls": True},
                            "budget": {"model_calls": 1},
                        }
                    )
                    with pytest.raises(BudgetExceeded) as be:
                        c.runs.wait(tight.id, timeout=30, raise_on_failure=True)
                    assert be.value.code == "model_calls"
                    with pytest.raises(ValidationError) as ei:
                        c.runs.submit({"kind": "nope", "input": "x"})
                    assert ei.value.details[0]["field"] == "kind"

            await asyncio.to_thread(use)


async def test_event_iterator_survives_a_server_restart_and_yields_each_event_once(
    redis_server: EmbeddedRedis, prefix: str
) -> None:
    settings = sim_settings(prefix)
    port = free_port()
    app = create_app(settings, redis_server.url)
    got: list[int] = []
    async with AsyncClient(f"http://127.0.0.1:{port}") as c:
        with serve_http(app, port):
            run = await c.runs.submit({"kind": "steps", "input": "x", "options": {"n": 8, "sleep": 0.3}})
            it = c.runs.events(run.id)
            async with running_worker(settings, redis_server.url):
                async for ev in it:
                    got.append(ev.id)
                    if len(got) == 4:
                        break
                # The server goes away mid-stream and comes back on the same port.
        with serve_http(create_app(settings, redis_server.url), port):
            async with running_worker(settings, redis_server.url):
                async for ev in c.runs.events(run.id, after=got[-1]):
                    got.append(ev.id)
    assert got == list(range(1, len(got) + 1)) and len(got) > 8


async def test_event_iterator_reconnects_by_itself(redis_server: EmbeddedRedis, prefix: str) -> None:
    settings = sim_settings(prefix)
    port = free_port()
    got: list[int] = []
    c = AsyncClient(f"http://127.0.0.1:{port}")
    restarted = threading.Event()

    def bounce() -> None:
        with serve_http(create_app(settings, redis_server.url), port):
            restarted.wait(60)

    with serve_http(create_app(settings, redis_server.url), port):
        run = await c.runs.submit({"kind": "steps", "input": "x", "options": {"n": 6, "sleep": 0.4}})
    t: threading.Thread | None = None
    async with running_worker(settings, redis_server.url):
        # No server now: the iterator must retry until one is back, then resume from Last-Event-ID.
        t = threading.Thread(target=bounce, daemon=True)
        loop = asyncio.get_running_loop()
        loop.call_later(1.0, t.start)
        async for ev in c.runs.events(run.id):
            got.append(ev.id)
    restarted.set()
    t.join(10)
    await c.aclose()
    assert got == list(range(1, len(got) + 1)) and got[-1] >= 9


async def test_sync_event_iterator_reconnects_by_itself(redis_server: EmbeddedRedis, prefix: str) -> None:
    settings = sim_settings(prefix)
    port = free_port()
    restarted = threading.Event()

    def bounce() -> None:
        with serve_http(create_app(settings, redis_server.url), port):
            restarted.wait(60)

    with serve_http(create_app(settings, redis_server.url), port):
        async with AsyncClient(f"http://127.0.0.1:{port}") as ac:
            run = await ac.runs.submit({"kind": "steps", "input": "x", "options": {"n": 6, "sleep": 0.4}})

    def follow() -> list[int]:
        # No server now: the blocking iterator must retry until one is back, then resume.
        threading.Timer(1.0, threading.Thread(target=bounce, daemon=True).start).start()
        with Client(f"http://127.0.0.1:{port}") as c:
            return [ev.id for ev in c.runs.events(run.id)]

    async with running_worker(settings, redis_server.url):
        got = await asyncio.to_thread(follow)
    restarted.set()
    assert got == list(range(1, len(got) + 1)) and got[-1] >= 9


async def test_ids_with_slashes_reach_no_other_route(redis_server: EmbeddedRedis, prefix: str) -> None:
    # Unencoded, "../admin/keys" would resolve to /v1/admin/keys and list the keys.
    settings = sim_settings(prefix)
    with serve_http(create_app(settings, redis_server.url)) as base:
        async with AsyncClient(base) as c:
            with pytest.raises(NotFound):
                await c.runs.get("../admin/keys")
            run = await c.runs.submit({"kind": "chat", "input": "x"})
            with pytest.raises(NotFound):
                await c.workspace.read(run.id, "../../admin/keys")


async def test_api_keys_tenants_and_revocation(redis_server: EmbeddedRedis, redis: Redis, prefix: str) -> None:
    settings = sim_settings(prefix, auth=True, admin_key="boot-secret")
    with serve_http(create_app(settings, redis_server.url)) as base:

        def use() -> tuple[str, str]:
            with Client(base, api_key="boot-secret") as boot:
                a = boot.admin.create_key("tenant-a", name="a")
                b = boot.admin.create_key("tenant-b", name="b")
            for key in (None, "cvk_wrong"):
                with Client(base, api_key=key) as anon:
                    with pytest.raises(Unauthorized) as ei:
                        anon.runs.list()
                    assert ei.value.status == 401 and ei.value.code == "unauthorized"
            with Client(base, api_key=a.key) as ca, Client(base, api_key=b.key) as cb:
                with pytest.raises(ConclaveError) as forbidden:
                    ca.admin.create_key("tenant-a")
                assert forbidden.value.status == 403, "a tenant's key may not administer"
                run = ca.runs.submit({"kind": "chat", "input": "mine"})
                assert ca.runs.get(run.id).tenant == "tenant-a"
                for call in (
                    lambda: cb.runs.get(run.id),
                    lambda: cb.runs.cancel(run.id),
                    lambda: list(cb.runs.events(run.id, follow=False)),
                    lambda: cb.runs.cost(run.id),
                ):
                    with pytest.raises(NotFound):
                        call()
                assert run.id not in [r.id for r in cb.runs.list().runs]
                assert run.id in [r.id for r in ca.runs.list().runs]
            with Client(base, api_key="boot-secret") as boot:
                assert boot.admin.revoke_key(b.info.id).revoked
                assert [k.id for k in boot.admin.list_keys("tenant-b")] == [b.info.id]
            with Client(base, api_key=b.key) as cb, pytest.raises(Unauthorized):
                cb.runs.list()
            return a.key, b.key

        a_key, b_key = await asyncio.to_thread(use)
    # Keys are stored only as hashes: the secret appears nowhere in Redis.
    dump = json.dumps(await redis.hgetall(f"{prefix}:apikeys")) + json.dumps(
        await redis.hgetall(f"{prefix}:apikey_ids")
    )
    assert a_key not in dump and b_key not in dump


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conclave.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


async def test_cli_submit_wait_json_and_runs_show(redis_server: EmbeddedRedis, prefix: str) -> None:
    settings = sim_settings(prefix)
    with serve_http(create_app(settings, redis_server.url)) as base:
        async with running_worker(settings, redis_server.url):
            p = await asyncio.to_thread(
                _cli, "submit", "--kind", "chat", "Say hello", "--wait", "--json", "--url", base
            )
            assert p.returncode == 0, p.stderr
            run = json.loads(p.stdout)
            assert run["status"] == "succeeded"
            show = await asyncio.to_thread(_cli, "runs", "show", run["id"], "--json", "--url", base)
            assert show.returncode == 0 and json.loads(show.stdout)["id"] == run["id"]
            cost = await asyncio.to_thread(_cli, "runs", "cost", run["id"], "--json", "--url", base)
            assert json.loads(cost.stdout)["by_model"]["sim"]["usage"]["model_calls"] == 1
            budget = await asyncio.to_thread(
                _cli,
                "submit",
                "--kind",
                "chat",
                "Write a long essay about rivers",
                "--budget-output-tokens",
                "5",
                "--wait",
                "--json",
                "--url",
                base,
            )
            b = json.loads(budget.stdout)
            assert b["usage"]["output_tokens"] <= 5 and b["cost"]["limits"][0]["cap"] == 5
            assert b["status"] in ("budget_exhausted", "succeeded") and (
                b["status"] == "budget_exhausted" or b["stop_reason"] == "length"
            )
            follow = await asyncio.to_thread(
                _cli,
                "submit",
                "--kind",
                "steps",
                "x",
                "--model",
                "sim",
                "--option",
                "n=4",
                "--option",
                "model_calls=true",
                "--budget-model-calls",
                "10",
                "--follow",
                "--url",
                base,
            )
            assert follow.returncode == 0, follow.stderr
            assert "succeeded" in follow.stdout and "sum=14" in follow.stdout
        missing = await asyncio.to_thread(_cli, "runs", "show", "run_nope", "--url", base)
        assert missing.returncode == 3 and "no run" in missing.stderr and "Traceback" not in missing.stderr
        bad = await asyncio.to_thread(_cli, "submit", "x", "--kind", "chat", "--budget-usd", "-1", "--url", base)
        assert bad.returncode == 2 and "budget.usd" in bad.stderr and "Traceback" not in bad.stderr
    down = await asyncio.to_thread(_cli, "runs", "ls", "--url", f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 5 and "cannot reach" in down.stderr


def test_cli_ensemble_validate_reports_the_archon_configs() -> None:
    compat = ROOT.parent / "shared" / "compat" / "archon-configs"
    if not compat.is_dir():
        pytest.skip(f"the Archon configs are not beside the repository ({compat})")
    p = _cli("ensemble", "validate", str(compat), "--json")
    checks = json.loads(p.stdout)
    assert p.returncode == 2 and len(checks) == 292
    bad = [c for c in checks if not c["ok"]]
    assert len(bad) == 2 and all("line" in c["error"] for c in bad)
    good = [c["path"] for c in checks if c["ok"]][:3]
    assert _cli("ensemble", "validate", *good).returncode == 0
