"""Webhooks end to end: a real receiver on 127.0.0.1, the API over HTTP, real workers (one killed with
SIGKILL), deliveries verified with the ``standardwebhooks`` library."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from standardwebhooks import Webhook

from conclave.api.app import create_app
from conclave.config import Settings
from conclave.controller.redis_server import EmbeddedRedis, free_port
from conclave.controller.redis_store import RedisRunStore
from conclave.schema import DeliveryStatus, WebhookDelivery

from ._helpers import TEST_KINDS, running_worker, serve_http, sim_settings, wait_terminal
from ._receiver import receiver

ROOT = Path(__file__).resolve().parents[2]

FAST = {"allow_hosts": ["127.0.0.1"], "backoff_initial_s": 0.05, "backoff_max_s": 0.2, "lease_s": 1.0}


def hook_settings(prefix: str, **webhooks: object) -> Settings:
    return sim_settings(prefix, webhooks={**FAST, **webhooks})


async def wait_delivery(
    store: RedisRunStore, tenant: str, status: DeliveryStatus, within: float = 30
) -> WebhookDelivery:
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while loop.time() < end:
        rows = await store.list_deliveries(tenant, status=status)
        if rows:
            return rows[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {status.value} delivery after {within} s: {await store.list_deliveries(tenant)}")


def _until(cond: Callable[[], bool], within: float) -> None:
    end = time.monotonic() + within
    while not cond() and time.monotonic() < end:
        time.sleep(0.05)


def store_for(redis: Redis, server: EmbeddedRedis, prefix: str) -> RedisRunStore:
    return RedisRunStore(redis, prefix, binary=Redis.from_url(server.url))


async def test_a_receiver_failing_three_times_gets_the_event_once_with_one_webhook_id(
    redis_server: EmbeddedRedis, redis: Redis, prefix: str
) -> None:
    settings = hook_settings(prefix)
    store = store_for(redis, redis_server, prefix)
    with receiver(fail_first=3) as rec, serve_http(create_app(settings, redis_server.url)) as api:
        async with httpx.AsyncClient(base_url=api) as c:
            secret = (await c.post("/v1/webhooks/secret")).json()["secret"]
            r = await c.post("/v1/runs", json={"kind": "chat", "input": "hi", "webhook": {"url": rec.url}})
            assert r.status_code == 201, r.text
            rid = r.json()["id"]
            async with running_worker(settings, redis_server.url):
                await wait_terminal(store, rid)
                d = await wait_delivery(store, "default", DeliveryStatus.DELIVERED)
            listed = (await c.get("/v1/webhooks/deliveries")).json()["deliveries"]
    assert [x["status"] for x in listed] == ["delivered"] and listed[0]["attempts"] == 4
    assert d.attempts == 4 and d.last_status_code == 204 and d.run_id == rid
    assert [q.answered for q in rec.requests] == [500, 500, 500, 204], "retried until a 2xx, then never again"
    assert len({q.headers["webhook-id"] for q in rec.requests}) == 1, "the same webhook-id on every attempt"
    last = rec.requests[-1]
    payload = Webhook(secret).verify(last.body, last.headers)
    assert payload["type"] == "run.finished" and payload["data"]["run_id"] == rid
    assert payload["data"]["status"] == "succeeded"
    assert last.headers["webhook-id"] == f"{rid}.{payload['data']['event_id']}"
    with pytest.raises(Exception, match="signature"):
        Webhook("whsec_" + "QUJD" * 11).verify(last.body, last.headers)


def _worker_proc(url: str, prefix: str, name: str, tmp: Path) -> subprocess.Popen[bytes]:
    cfg = tmp / "conclave.toml"
    cfg.write_text(
        '[[models]]\nname = "sim"\nengine = "sim"\n\n'
        '[webhooks]\nallow_hosts = ["127.0.0.1"]\nbackoff_initial_s = 0.05\nbackoff_max_s = 0.2\nlease_s = 1.0\n'
    )
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        CONCLAVE_KEY_PREFIX=prefix,
        CONCLAVE_LEASE_SECONDS="1",
        CONCLAVE_KINDS=",".join(f"{k}={v}" for k, v in TEST_KINDS.items()),
        CONCLAVE_HOME=str(tmp / "home"),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "conclave.controller.worker", "--config", str(cfg), "--redis-url", url, "--name", name],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_a_worker_sigkilled_between_commit_and_delivery_still_delivers(
    redis_server: EmbeddedRedis, redis: Redis, prefix: str, tmp_path: Path
) -> None:
    settings = hook_settings(prefix)
    store = store_for(redis, redis_server, prefix)
    await store.ready()
    with receiver(hold_first=True) as rec:
        from conclave.controller.webhooks import new_secret

        secret = new_secret()
        await store.init_webhook_secret("default", secret)
        from conclave.schema import TaskSpec

        run = (await store.submit(TaskSpec(kind="chat", input="hi", webhook={"url": rec.url}))).run
        proc = _worker_proc(redis_server.url, prefix, "doomed", tmp_path)
        try:
            # The run has committed run.finished (and its outbox entry) once its delivery is in flight.
            assert await asyncio.to_thread(rec.arrived.wait, 60), "the first worker never tried to deliver"
            assert (await store.get(run.id)).status.value == "succeeded"  # type: ignore[union-attr]
            os.kill(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait, 10)
        finally:
            if proc.poll() is None:
                proc.kill()
        rec.release.set()
        pending = await store.list_deliveries("default")
        assert [d.status for d in pending] == [DeliveryStatus.PENDING], "not delivered when its worker died"
        async with running_worker(settings, redis_server.url, name="rescuer"):
            d = await wait_delivery(store, "default", DeliveryStatus.DELIVERED)
    assert len(rec.ok()) == 1 and len(rec.requests) == 2
    assert rec.requests[0].headers["webhook-id"] == rec.requests[1].headers["webhook-id"] == d.id
    assert Webhook(secret).verify(rec.requests[1].body, rec.requests[1].headers)["data"]["run_id"] == run.id
    assert (await store.outbox_depth()).in_flight == 0


async def test_a_receiver_down_longer_than_the_retry_window_is_dead_lettered_and_listed(
    redis_server: EmbeddedRedis, redis: Redis, prefix: str
) -> None:
    settings = hook_settings(prefix, retry_window_s=1.0)
    store = store_for(redis, redis_server, prefix)
    down = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    with serve_http(create_app(settings, redis_server.url)) as api:
        async with httpx.AsyncClient(base_url=api) as c:
            sub = (await c.post("/v1/webhooks", json={"url": down, "events": ["run.queued"]})).json()
            assert sub["secret"].startswith("whsec_") and sub["subscription"]["url"] == down
            rid = (await c.post("/v1/runs", json={"kind": "chat", "input": "hi"})).json()["id"]
            async with running_worker(settings, redis_server.url):
                d = await wait_delivery(store, "default", DeliveryStatus.DEAD)
            dead = (await c.get("/v1/webhooks/deliveries", params={"status": "dead"})).json()["deliveries"]
        cli = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "conclave.cli", "webhooks", "deliveries", "--status", "dead", "--url", api],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
    assert d.run_id == rid and d.type == "run.queued" and d.attempts >= 2 and d.last_error
    assert "ConnectError" in d.last_error
    assert [x["id"] for x in dead] == [d.id] and dead[0]["status"] == "dead"
    assert cli.returncode == 0, cli.stderr
    assert d.id in cli.stdout and "dead" in cli.stdout


@pytest.mark.parametrize(
    "url",
    ["http://10.1.2.3/hook", "http://192.168.0.10:8080/hook", "http://169.254.169.254/latest", "http://[::1]/hook"],
)
async def test_a_private_destination_is_refused_at_submission_with_a_clear_message(
    redis_server: EmbeddedRedis, redis: Redis, prefix: str, url: str
) -> None:
    settings = sim_settings(prefix)  # no allow_hosts: private destinations are refused
    store = store_for(redis, redis_server, prefix)
    with serve_http(create_app(settings, redis_server.url)) as api:
        async with httpx.AsyncClient(base_url=api) as c:
            await c.post("/v1/webhooks/secret")
            r = await c.post("/v1/runs", json={"kind": "chat", "input": "hi", "webhook": {"url": url}})
            s = await c.post("/v1/webhooks", json={"url": url})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "webhook_destination_refused"
    assert "private, loopback or reserved address" in err["message"] and "webhooks.allow_hosts" in err["message"]
    assert err["details"][0]["field"] == "webhook.url" and err["details"][0]["value"] == url
    assert s.status_code == 422 and s.json()["error"]["details"][0]["field"] == "url"
    assert (await store.list_runs(tenant="default")).runs == [], "nothing was queued"
    assert await store.list_subscriptions("default") == []


async def test_a_run_webhook_needs_the_tenants_secret_first(redis_server: EmbeddedRedis, prefix: str) -> None:
    settings = hook_settings(prefix)
    with serve_http(create_app(settings, redis_server.url)) as api:
        async with httpx.AsyncClient(base_url=api) as c:
            r = await c.post(
                "/v1/runs", json={"kind": "chat", "input": "hi", "webhook": {"url": "http://127.0.0.1:9/h"}}
            )
            bad = await c.post(
                "/v1/runs", json={"kind": "chat", "input": "hi", "webhook": {"url": "ftp://x/h", "events": ["nope"]}}
            )
    assert r.status_code == 422 and r.json()["error"]["code"] == "webhook_secret_missing"
    assert "POST /v1/webhooks/secret" in r.json()["error"]["message"]
    fields = {d["field"] for d in bad.json()["error"]["details"]}
    assert bad.status_code == 422 and {"webhook.url", "webhook.events.0"} <= fields, bad.json()


async def test_subscriptions_are_per_tenant_and_rotation_signs_with_both_secrets(
    redis_server: EmbeddedRedis, redis: Redis, prefix: str
) -> None:
    settings = hook_settings(prefix, secret_grace_s=3600)
    store = store_for(redis, redis_server, prefix)
    with receiver() as rec, serve_http(create_app(settings, redis_server.url)) as api:
        async with httpx.AsyncClient(base_url=api) as c:
            first = (await c.post("/v1/webhooks", json={"url": rec.url, "description": "ci"})).json()
            second = (await c.post("/v1/webhooks", json={"url": rec.url, "events": ["run.started"]})).json()
            assert first["secret"] and second["secret"] is None, "the secret is shown once"
            rotated = (await c.post("/v1/webhooks/secret")).json()
            assert rotated["secret"] != first["secret"] and rotated["previous_valid_until"]
            subs = (await c.get("/v1/webhooks")).json()
            assert [s["id"] for s in subs] == [first["subscription"]["id"], second["subscription"]["id"]]
            gone = await c.delete(f"/v1/webhooks/{second['subscription']['id']}")
            assert (
                gone.status_code == 204
                and (await c.delete(f"/v1/webhooks/{second['subscription']['id']}")).status_code == 404
            )
            rid = (await c.post("/v1/runs", json={"kind": "chat", "input": "hi"})).json()["id"]
            async with running_worker(settings, redis_server.url):
                await wait_terminal(store, rid)
                await wait_delivery(store, "default", DeliveryStatus.DELIVERED)
    [got] = rec.requests
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    for secret in (first["secret"], rotated["secret"]):
        assert json.loads(got.body)["data"]["run_id"] == Webhook(secret).verify(got.body, got.headers)["data"]["run_id"]
    assert await store.list_subscriptions("other") == [] and await store.list_deliveries("other") == []


async def test_a_worker_on_the_in_memory_store_delivers_too(prefix: str) -> None:
    from conclave.controller.service import RunService
    from conclave.controller.worker import Worker, local_router
    from conclave.core.memory import InMemoryRunStore
    from conclave.schema import TaskSpec

    settings = hook_settings(prefix)
    store = InMemoryRunStore()
    await store.init_webhook_secret("default", "whsec_" + "QUJD" * 11)
    with receiver(fail_first=1) as rec:
        run, _ = await RunService(store, settings).submit(
            TaskSpec(kind="chat", input="hi", webhook={"url": rec.url}), tenant="default"
        )
        worker = Worker(settings, local_router(settings), store=store, name="mem")
        task = asyncio.ensure_future(worker.run())
        try:
            await asyncio.to_thread(_until, lambda: bool(rec.ok()), 30)
        finally:
            worker.stop()
            await asyncio.wait_for(task, 10)
    [d] = await store.list_deliveries("default")
    assert d.status is DeliveryStatus.DELIVERED and d.attempts == 2 and d.run_id == run.id
    assert [q.answered for q in rec.requests] == [500, 204]


async def test_a_receiver_that_hangs_never_holds_up_the_run(
    redis_server: EmbeddedRedis, redis: Redis, prefix: str
) -> None:
    """Deliveries run beside the runs: the receiver holds the run's first delivery (``run.queued``)
    unanswered while the run still has its steps to do, and the run does them all and finishes before
    the receiver lets go; the held delivery is then retried and every event arrives."""
    settings = hook_settings(prefix)
    store = store_for(redis, redis_server, prefix)
    await store.ready()
    from conclave.controller.webhooks import new_secret
    from conclave.schema import TaskSpec

    await store.init_webhook_secret("default", new_secret())
    with receiver(hold_first=True) as rec:
        events = ["run.queued", "run.started", "run.finished"]
        opts = {"n": 8, "sleep": 0.25}
        spec = TaskSpec(kind="steps", input="x", options=opts, webhook={"url": rec.url, "events": events})
        run = (await store.submit(spec)).run
        async with running_worker(settings, redis_server.url):
            assert await asyncio.to_thread(rec.arrived.wait, 60), "no delivery was tried"
            at_hold = await store.get(run.id)
            done = await wait_terminal(store, run.id)
            held = rec.holding.is_set()  # the first request is still unanswered
            rec.release.set()
            delivered = [await wait_delivery(store, "default", DeliveryStatus.DELIVERED)]
            await asyncio.to_thread(_until, lambda: len(rec.ok()) >= 3, 30)
    assert at_hold is not None and not at_hold.status.terminal, "the run still had work when the hold began"
    assert done.status.value == "succeeded" and held, "the run finished while its first delivery was held"
    assert delivered and sorted(json.loads(r.body)["type"] for r in rec.ok()) == sorted(events)
