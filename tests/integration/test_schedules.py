"""Scheduled runs: two schedulers racing over a one-second schedule, missed-tick policies, the API."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from conclave.api.app import create_app
from conclave.controller.redis_server import EmbeddedRedis
from conclave.controller.redis_store import RedisRunStore
from conclave.controller.schedules import Scheduler, ScheduleService
from conclave.schema import ScheduleRequest, ScheduleStatus

from ._helpers import serve_http, sim_settings

ROOT = Path(__file__).resolve().parents[2]


def store_for(redis: Redis, server: EmbeddedRedis, prefix: str) -> RedisRunStore:
    return RedisRunStore(redis, prefix, binary=Redis.from_url(server.url))


async def scheduled_runs(store: RedisRunStore, sid: str, tenant: str = "default") -> list[str]:
    runs, cursor = [], None
    while True:
        page = await store.list_runs(tenant=tenant, limit=500, cursor=cursor)
        runs += [r for r in page.runs if r.spec.metadata.get("schedule_id") == sid]
        if not page.next_cursor:
            return [r.spec.metadata["schedule_tick"] for r in runs]
        cursor = page.next_cursor


async def test_two_schedulers_racing_over_twenty_ticks_of_a_one_second_schedule_make_twenty_runs(
    redis_server: EmbeddedRedis, prefix: str
) -> None:
    settings = sim_settings(prefix, schedules={"poll_s": 0.05})
    # Two schedulers, each with its own store and connection pool, as two worker processes would be.
    stores = [store_for(Redis.from_url(redis_server.url, decode_responses=True), redis_server, prefix) for _ in "ab"]
    await stores[0].ready()
    first = int(time.time()) + 2
    end_at = datetime.fromtimestamp(first + 19.5, UTC)  # ticks first, first + 1, ..., first + 19: twenty
    await asyncio.sleep(max(0.0, first - 1 - time.time() + 0.05))  # created within the second before `first`
    sched = await ScheduleService(stores[0], settings).create(
        ScheduleRequest(cron="* * * * * *", task={"input": "tick", "model": "sim"}, end_at=end_at), tenant="default"
    )
    assert sched.next_tick_at is not None and sched.next_tick_at.timestamp() == first
    start = first
    stop = asyncio.Event()
    loops = [asyncio.ensure_future(Scheduler(s, settings, name=f"w{i}").run(stop)) for i, s in enumerate(stores)]
    try:
        await asyncio.sleep(first + 21 - time.time())  # the last tick plus a second
    finally:
        stop.set()
        await asyncio.gather(*loops)
    ticks = await scheduled_runs(stores[0], sched.id)
    n = 20
    expected = [datetime.fromtimestamp(start + i, UTC).isoformat().replace("+00:00", "Z") for i in range(n)]
    assert sorted(ticks) == expected, "exactly one run per tick, none missing, none doubled"
    st = await stores[0].get_schedule(sched.id)
    assert st is not None and st.schedule.runs == n and st.schedule.status is ScheduleStatus.ENDED
    for s in stores:
        await s.close()


async def test_missed_ticks_are_skipped_or_run_once_by_policy(
    redis: Redis, redis_server: EmbeddedRedis, prefix: str
) -> None:
    settings = sim_settings(prefix, schedules={"grace_s": 5})
    store = store_for(redis, redis_server, prefix)
    await store.ready()
    svc = ScheduleService(store, settings)
    skip = await svc.create(ScheduleRequest(cron="* * * * *", task={"input": "s", "model": "sim"}), tenant="default")
    once = await svc.create(
        ScheduleRequest(cron="* * * * *", task={"input": "o", "model": "sim"}, missed="run_once"), tenant="default"
    )
    scheduler = Scheduler(store, settings, name="late")
    # No scheduler ran for ten minutes: ten ticks passed, all of them later than the grace period.
    later = (time.time() + 600) // 60 * 60 + 30  # half a minute after a tick: none is within the grace
    assert await scheduler.tick_once(later) == 1
    assert await scheduled_runs(store, skip.id) == []
    [tick] = await scheduled_runs(store, once.id)
    assert datetime.fromisoformat(tick).timestamp() > later - 65, "run_once runs the latest missed tick"
    assert await scheduler.tick_once(later) == 0, "and only once"
    for s in (skip, once):
        st = await store.get_schedule(s.id)
        assert st is not None and st.schedule.next_tick_at is not None and st.schedule.next_tick_at.timestamp() > later


async def test_schedules_over_http_are_tenant_scoped_validated_and_pausable(
    redis_server: EmbeddedRedis, prefix: str
) -> None:
    settings = sim_settings(prefix, auth=True, admin_key="boot")
    with serve_http(create_app(settings, redis_server.url)) as api:
        async with httpx.AsyncClient(base_url=api, headers={"Authorization": "Bearer boot"}) as admin:
            keys = [(await admin.post("/v1/admin/keys", json={"tenant": t})).json()["key"] for t in ("ta", "tb")]
        a = httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {keys[0]}"})
        b = httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {keys[1]}"})
        async with a, b:
            body = {"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin", "task": {"input": "report", "model": "sim"}}
            r = await a.post("/v1/schedules", json=body)
            assert r.status_code == 201, r.text
            s = r.json()
            nxt = datetime.fromisoformat(s["next_tick_at"])
            assert nxt.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin")).hour == 9
            assert (await b.get(f"/v1/schedules/{s['id']}")).status_code == 404, "another tenant's is not found"
            assert (await b.post(f"/v1/schedules/{s['id']}/pause")).status_code == 404
            assert (await b.get("/v1/schedules")).json() == {"schedules": []}
            paused = (await a.post(f"/v1/schedules/{s['id']}/pause")).json()
            assert paused["status"] == "paused" and paused["next_tick_at"] is None
            resumed = (await a.post(f"/v1/schedules/{s['id']}/resume")).json()
            assert resumed["status"] == "active" and resumed["next_tick_at"] == s["next_tick_at"]
            bad = await a.post(
                "/v1/schedules",
                json={"cron": "every day", "timezone": "Mars/Olympus", "task": {"input": "x", "kind": "nope"}},
            )
            fields = {d["field"]: d["message"] for d in bad.json()["error"]["details"]}
            assert bad.status_code == 422 and {"cron", "timezone"} <= set(fields), bad.json()
            assert "not a cron expression" in fields["cron"] and "IANA time zone" in fields["timezone"]
            kind = await a.post("/v1/schedules", json={**body, "task": {"input": "x", "kind": "nope"}})
            assert kind.status_code == 422 and kind.json()["error"]["details"][0]["field"] == "task", kind.json()
            ended = await a.post("/v1/schedules", json={**body, "end_at": "2001-01-01T00:00:00Z"})
            assert ended.status_code == 422 and ended.json()["error"]["code"] == "schedule_never_ticks"
            assert (await a.delete(f"/v1/schedules/{s['id']}")).status_code == 204
            assert (await a.get(f"/v1/schedules/{s['id']}")).status_code == 404


async def test_the_sdk_and_the_cli_manage_schedules_and_webhooks(redis_server: EmbeddedRedis, prefix: str) -> None:
    import subprocess
    import sys

    from conclave.sdk import AsyncClient, Client, NotFound

    settings = sim_settings(prefix, webhooks={"allow_hosts": ["127.0.0.1"]})

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "conclave.cli", *args, "--url", api],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )

    with serve_http(create_app(settings, redis_server.url)) as api:
        async with AsyncClient(api) as ac:
            s = await ac.schedules.create(
                {"cron": "*/5 * * * *", "task": {"input": "x", "model": "sim"}, "name": "five"}
            )
            assert [x.id for x in await ac.schedules.list()] == [s.id]
            new = await ac.webhooks.subscribe("http://127.0.0.1:9/h", events=["run.finished", "run.started"])
            assert new.secret and new.subscription.events == ["run.finished", "run.started"]
        added = await asyncio.to_thread(
            cli, "schedules", "add", "--cron", "0 9 * * *", "--input", "daily", "--model", "sim"
        )
        assert added.returncode == 0, added.stderr
        sid = added.stdout.split()[0]
        paused = await asyncio.to_thread(cli, "schedules", "pause", sid)
        listed = await asyncio.to_thread(cli, "schedules", "ls")
        hooks = await asyncio.to_thread(cli, "webhooks", "ls", "--json")
        bad = await asyncio.to_thread(cli, "schedules", "add", "--cron", "nope", "--input", "x")
        with Client(api) as c:
            assert c.schedules.get(sid).status.value == "paused"
            c.schedules.delete(sid)
            with pytest.raises(NotFound):
                c.schedules.get(sid)
            c.webhooks.delete(new.subscription.id)
            assert c.webhooks.list() == []
            assert c.webhooks.rotate_secret().secret.startswith("whsec_")
    assert paused.returncode == 0 and "paused" in paused.stdout
    assert sid in listed.stdout and "five" in listed.stdout
    assert hooks.returncode == 0 and json.loads(hooks.stdout)[0]["id"] == new.subscription.id
    assert bad.returncode == 2 and "cron" in bad.stderr, bad.stderr
