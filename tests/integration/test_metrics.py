"""Prometheus metrics: ``/metrics`` on the API and on a worker's listener, parsed with
``prometheus_client.parser``; counters rise with the work done and tenants' figures stay apart."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from conclave.api.app import create_app
from conclave.controller.redis_server import EmbeddedRedis, free_port
from conclave.controller.redis_store import RedisRunStore
from conclave.core.metrics import _TenantLabels

from ._helpers import running_worker, serve_http, sim_settings, wait_terminal

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum over series of ``name`` whose labels include ``labels`` (0 when there is none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


async def test_metrics_rise_with_work_done_and_keep_tenants_apart(
    redis_server: EmbeddedRedis, redis: Redis, prefix: str
) -> None:
    port = free_port()
    settings = sim_settings(prefix, auth=True, admin_key="boot", metrics={"worker_port": port, "token": "mtok"})
    store = RedisRunStore(redis, prefix, binary=Redis.from_url(redis_server.url))
    with serve_http(create_app(settings, redis_server.url)) as api:
        admin = httpx.AsyncClient(base_url=api, headers={"Authorization": "Bearer boot"})
        async with admin:
            assert (await httpx.AsyncClient(base_url=api).get("/metrics")).status_code == 401
            ta, tb = (f"mta-{prefix}", f"mtb-{prefix}")
            keys = {t: (await admin.post("/v1/admin/keys", json={"tenant": t})).json()["key"] for t in (ta, tb)}
            before = parse((await admin.get("/metrics")).text)
            for who, status in ((keys[ta], 403), ("mtok", 200)):
                got = await httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {who}"}).get("/metrics")
                assert got.status_code == status, got.text
            rids: dict[str, list[str]] = {ta: [], tb: []}
            for tenant, n in ((ta, 2), (tb, 1)):
                async with httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {keys[tenant]}"}) as c:
                    for i in range(n):
                        r = await c.post("/v1/runs", json={"kind": "chat", "input": f"count me {i} " * (i + 1)})
                        rids[tenant].append(r.json()["id"])
            queued = parse((await admin.get("/metrics")).text)
            assert value(queued, "conclave_runs", tenant=ta, status="queued") == 2
            assert value(queued, "conclave_queue_depth", state="waiting") >= 3
            assert value(queued, "conclave_queue_oldest_age_seconds") > 0
            async with running_worker(settings, redis_server.url) as worker:
                runs = {t: [await wait_terminal(store, rid) for rid in ids] for t, ids in rids.items()}
                assert worker.metrics_port == port
                async with httpx.AsyncClient() as c:
                    listener = parse((await c.get(f"http://127.0.0.1:{port}/metrics")).text)
            after = parse((await admin.get("/metrics")).text)
    assert value(listener, "conclave_step_seconds_count") >= 3, "the worker's listener serves its histograms"
    for tenant in (ta, tb):
        done = runs[tenant]
        assert all(r.status.value == "succeeded" for r in done)
        finished = value(after, "conclave_runs_finished_total", tenant=tenant, status="succeeded", kind="chat")
        assert finished - value(before, "conclave_runs_finished_total", tenant=tenant) == len(done)
        for kind, field in (("input", "input_tokens"), ("output", "output_tokens")):
            rose = value(after, "conclave_tokens_total", tenant=tenant, model="sim", type=kind) - value(
                before, "conclave_tokens_total", tenant=tenant, model="sim", type=kind
            )
            assert rose == sum(getattr(r.usage, field) for r in done) > 0, (tenant, kind)
        assert value(after, "conclave_runs", tenant=tenant, status="succeeded") == len(done)
        assert value(after, "conclave_runs", tenant=tenant, status="queued") == 0
    calls = value(after, "conclave_model_call_seconds_count", model="sim", outcome="ok") - value(
        before, "conclave_model_call_seconds_count", model="sim", outcome="ok"
    )
    assert calls >= 3
    assert value(after, "conclave_queue_depth", state="waiting") == 0


def test_tenant_labels_are_bounded_per_process() -> None:
    labels = _TenantLabels(limit=2)
    assert [labels(t) for t in ("a", "b", "c", "a", "d", "b")] == ["a", "b", "_other", "a", "_other", "b"]
    assert _TenantLabels(limit=0)("a") == "_other"
