"""Tenant budgets as a user meets them, over real HTTP: an admin sets a tenant's daily cap; the tenant's
runs and its calls on the OpenAI endpoint share it; spend is readable per period; once the cap is reached,
endpoint calls get OpenAI's 429 ``insufficient_quota`` (the ``openai`` client raises ``RateLimitError``);
another tenant is not affected; raising the cap lets calls through again."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx
import openai
import pytest

from conclave.api.ingress import build_fastapi
from conclave.controller.redis_server import EmbeddedRedis
from conclave.controller.redis_store import RedisRunStore
from conclave.controller.worker import connect
from conclave.core.store import FinishFields
from conclave.schema import RunStatus, StopReason, TaskSpec

from ._helpers import running_worker, serve_http, sim_settings, wait_terminal
from ._keys import new_key

HELLO = [{"role": "user", "content": "say something about the sea, please"}]


async def test_runs_and_endpoint_calls_share_the_tenants_cap(redis_server: EmbeddedRedis, prefix: str) -> None:
    a = await new_key(redis_server.url, prefix, "tenant-a")
    b = await new_key(redis_server.url, prefix, "tenant-b")
    settings = sim_settings(prefix, auth=True, admin_key="boot")
    store = RedisRunStore(connect(redis_server.url), prefix)
    with serve_http(build_fastapi(settings, redis_server.url, router_mode="local")) as base:

        def admin_sets_a_budget() -> dict[str, object]:
            r = httpx.put(
                f"{base}/v1/admin/tenants/tenant-a/budget",
                json={"periods": {"daily": {"model_calls": 4}}},
                headers={"Authorization": "Bearer boot"},
            )
            assert r.status_code == 200, r.text
            refused = httpx.put(
                f"{base}/v1/admin/tenants/tenant-a/budget",
                json={"periods": {"daily": {"model_calls": 99}}},
                headers={"Authorization": f"Bearer {a.key}"},
            )
            assert refused.status_code == 403, "a tenant may not raise its own budget"
            return dict(r.json())

        assert (await asyncio.to_thread(admin_sets_a_budget))["periods"]["daily"]["model_calls"] == 4

        async with running_worker(settings, redis_server.url):

            def one_run_of_two_calls() -> str:
                r = httpx.post(
                    f"{base}/v1/runs",
                    json={"kind": "steps", "input": "x", "model": "sim", "options": {"n": 2, "model_calls": True}},
                    headers={"Authorization": f"Bearer {a.key}"},
                )
                assert r.status_code == 201, r.text
                return str(r.json()["id"])

            rid = await asyncio.to_thread(one_run_of_two_calls)
            run = await wait_terminal(store, rid)
            assert run.status.value == "succeeded" and run.usage.model_calls == 2

        def endpoint_calls() -> tuple[int, str | None, dict[str, object]]:
            ca = openai.OpenAI(base_url=f"{base}/v1", api_key=a.key, max_retries=0)
            ok = 0
            code = None
            for _ in range(4):
                try:
                    ca.chat.completions.create(model="sim", messages=HELLO, max_tokens=8)  # type: ignore[arg-type]
                    ok += 1
                except openai.RateLimitError as e:
                    code = e.code
                    break
            cb = openai.OpenAI(base_url=f"{base}/v1", api_key=b.key, max_retries=0)
            assert cb.chat.completions.create(model="sim", messages=HELLO, max_tokens=8).choices  # type: ignore[arg-type]
            spend = httpx.get(f"{base}/v1/spend", headers={"Authorization": f"Bearer {a.key}"}).json()
            return ok, code, spend

        ok, code, spend = await asyncio.to_thread(endpoint_calls)
        assert ok == 2, "the run's two calls and two endpoint calls fill the cap of four"
        assert code == "insufficient_quota"
        daily = next(s for s in spend["tenant"] if s["period"] == "daily")
        calls = next(x for x in daily["lines"] if x["limit"] == "model_calls")
        assert (calls["cap"], calls["used"], calls["reserved"], calls["left"]) == (4, 4, 0, 0)
        assert daily["by_model"]["sim"]["model_calls"] == 4
        key_daily = next(s for s in spend["key"] if s["period"] == "daily")
        assert next(x for x in key_daily["lines"] if x["limit"] == "model_calls")["used"] == 4, "charged to the key too"

        def raised_cap_lets_calls_through() -> None:
            r = httpx.put(
                f"{base}/v1/admin/tenants/tenant-a/budget",
                json={"periods": {"daily": {"model_calls": 5}}},
                headers={"Authorization": "Bearer boot"},
            )
            assert r.status_code == 200
            ca = openai.OpenAI(base_url=f"{base}/v1", api_key=a.key, max_retries=0)
            stream = ca.chat.completions.create(model="sim", messages=HELLO, max_tokens=8, stream=True)  # type: ignore[call-overload]
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            with pytest.raises(openai.RateLimitError):
                ca.chat.completions.create(model="sim", messages=HELLO, max_tokens=8)  # type: ignore[arg-type]

        await asyncio.to_thread(raised_cap_lets_calls_through)
    await store.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conclave.cli", *args], capture_output=True, text=True, timeout=120)


async def test_the_cli_sets_a_budget_reads_spend_sets_retention_and_purges(
    redis_server: EmbeddedRedis, prefix: str
) -> None:
    settings = sim_settings(prefix, auth=True, admin_key="boot")
    store = RedisRunStore(connect(redis_server.url), prefix)
    with serve_http(build_fastapi(settings, redis_server.url, router_mode="local")) as base:
        admin = ["--url", base, "--api-key", "boot"]

        def use() -> None:
            p = _cli("tenants", "set-budget", "tenant-c", "--period", "daily", "--model-calls", "3", *admin)
            assert p.returncode == 0, p.stderr
            p = _cli("tenants", "set-budget", "tenant-c", "--period", "monthly", "--usd", "2.5", "--json", *admin)
            assert p.returncode == 0, p.stderr
            periods = {
                k: {n: v for n, v in caps.items() if v is not None}
                for k, caps in json.loads(p.stdout)["periods"].items()
            }
            assert periods == {"daily": {"model_calls": 3}, "monthly": {"usd": 2.5}}, (
                "a period's caps are kept when another is set"
            )
            p = _cli("tenants", "spend", "tenant-c", "--json", *admin)
            daily = next(s for s in json.loads(p.stdout) if s["period"] == "daily")
            assert next(x for x in daily["lines"] if x["limit"] == "model_calls")["cap"] == 3
            p = _cli("tenants", "set-retention", "tenant-c", "--days", "7", *admin)
            assert p.returncode == 0 and "kept 7 days" in p.stdout, p.stdout + p.stderr
            assert _cli("tenants", "spend", "tenant-c", "--url", base).returncode == 4, "auth is on: no key, exit 4"

        await asyncio.to_thread(use)
        await store.ready()
        run = (await store.submit(TaskSpec(kind="chat", input="x"), tenant="tenant-c")).run
        (entry,) = await store.read_new("c", 10, 100)
        await store.claim(run.id, owner="o", qid=entry.qid, worker="w", max_attempts=3)
        await store.finish(run.id, "o", RunStatus.SUCCEEDED, FinishFields(stop_reason=StopReason.END_TURN))
        p = await asyncio.to_thread(
            _cli,
            "runs",
            "purge",
            "--tenant",
            "tenant-c",
            "--older-than-days",
            "0",
            "--json",
            "--url",
            base,
            "--api-key",
            "boot",
        )
        assert p.returncode == 0 and json.loads(p.stdout) == {"purged": 1}, p.stdout + p.stderr
        assert await store.get(run.id) is None
    await store.close()


async def test_a_run_its_tenants_budget_paused_continues_when_there_is_room(
    redis_server: EmbeddedRedis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paused (not failed) at the cap, keeping its steps; resumed at once when an admin raises the cap; and
    resumed by the workers by themselves when room appears otherwise (as when a period rolls over)."""
    import conclave.controller.worker as worker_module
    from conclave.controller.tenants import TenantAdmin
    from conclave.core.store_tenants import tenant_scope
    from conclave.schema import BudgetLimits, ScopeBudget

    monkeypatch.setattr(worker_module, "RESUME_EVERY_S", 0.3)
    settings = sim_settings(prefix)
    store = RedisRunStore(connect(redis_server.url), prefix)
    await store.ready()

    def daily(calls: int) -> ScopeBudget:
        return ScopeBudget(periods={"daily": BudgetLimits(model_calls=calls)})

    async def paused(rid: str) -> None:
        for _ in range(400):
            run = await store.get(rid)
            assert run is not None and not run.status.terminal, run
            if run.status is RunStatus.PAUSED:
                assert run.pause_reason == "tenant_budget"
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"run {rid} never paused")

    spec = TaskSpec(kind="steps", input="x", model="sim", options={"n": 4, "model_calls": True})
    await store.set_budget(tenant_scope("t-paused"), daily(2))
    async with running_worker(settings, redis_server.url):
        rid = (await store.submit(spec, tenant="t-paused")).run.id
        await paused(rid)
        assert len(await store.load_steps(rid)) == 2, "the two steps that fitted are kept"
        await TenantAdmin(store).set_tenant_budget("t-paused", daily(4))  # the admin raises the cap
        done = await wait_terminal(store, rid)
        assert done.status is RunStatus.SUCCEEDED and done.usage.model_calls == 4

        other = (await store.submit(spec, tenant="t-paused")).run.id
        await paused(other)
        await store.set_budget(tenant_scope("t-paused"), daily(8))  # room appears without the admin route
        done = await wait_terminal(store, other)
        assert done.status is RunStatus.SUCCEEDED, "a worker resumed it by itself"
    await store.close()


async def test_an_ensemble_run_pauses_at_its_tenants_cap_instead_of_ending(
    redis_server: EmbeddedRedis, prefix: str
) -> None:
    from conclave.controller.tenants import TenantAdmin
    from conclave.core.store_tenants import tenant_scope
    from conclave.schema import BudgetLimits, ScopeBudget

    settings = sim_settings(prefix)
    store = RedisRunStore(connect(redis_server.url), prefix)
    await store.ready()
    await store.set_budget(tenant_scope("t-ens"), ScopeBudget(periods={"none": BudgetLimits(model_calls=1)}))
    ensemble = {
        "name": "two-layers",
        "layers": [[{"type": "generator", "model": "sim", "samples": 3}], [{"type": "fuser", "model": "sim"}]],
    }
    spec = TaskSpec(kind="ensemble", input="Name a colour.", ensemble=ensemble)
    async with running_worker(settings, redis_server.url):
        rid = (await store.submit(spec, tenant="t-ens")).run.id
        for _ in range(400):
            run = await store.get(rid)
            assert run is not None and not run.status.terminal, f"it ended instead of pausing: {run}"
            if run.status is RunStatus.PAUSED:
                break
            await asyncio.sleep(0.05)
        assert run.pause_reason == "tenant_budget"
        await TenantAdmin(store).set_tenant_budget("t-ens", ScopeBudget(periods={"none": BudgetLimits(model_calls=5)}))
        done = await wait_terminal(store, rid)
    assert done.status is RunStatus.SUCCEEDED and done.usage.model_calls == 2, done
    await store.close()


async def test_a_budget_too_large_to_count_is_a_422_naming_the_field(redis_server: EmbeddedRedis, prefix: str) -> None:
    """What schemathesis found: ``usd=1.8e296`` overflowed the conversion to pico-dollars (a 500)."""
    settings = sim_settings(prefix)
    with serve_http(build_fastapi(settings, redis_server.url, router_mode="local")) as base:
        async with httpx.AsyncClient(base_url=base) as c:
            r = await c.put("/v1/admin/tenants/0/budget", json={"periods": {"daily": {"usd": 1.8e296}}})
            after = await c.get("/v1/admin/tenants/0/budget")
    assert r.status_code == 422, r.text
    assert [d["field"] for d in r.json()["error"]["details"]] == ["periods.daily.usd"]
    assert after.json() == {"periods": {}}, "nothing was stored"
