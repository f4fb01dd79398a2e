"""The ``OutboxStore`` contract (``conclave.core.store_outbox``) and the service gauges, on every backend."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from conclave.core.store import FinishFields, RunStore
from conclave.core.store_outbox import DeliveryOutcome
from conclave.schema import DeliveryStatus, RunStatus, StopReason, TaskSpec, WebhookSubscription


def spec(**kw: object) -> TaskSpec:
    return TaskSpec.model_validate({"kind": "chat", "input": "hello", **kw})


def sub(tenant: str, sid: str, events: list[str], url: str = "http://127.0.0.1:9/hook") -> WebhookSubscription:
    return WebhookSubscription.model_validate(
        {"id": sid, "tenant": tenant, "url": url, "events": events, "created_at": datetime.now(UTC)}
    )


async def claim(store: RunStore, rid: str, owner: str = "o1") -> str:
    entries = await store.read_new("c1", 100, 100)
    qid = next(e.qid for e in entries if e.rid == rid)
    await store.claim(rid, owner=owner, qid=qid, worker="w1", max_attempts=3)
    return qid


async def test_a_runs_webhook_gets_an_outbox_entry_in_the_same_change_as_its_event(store: RunStore) -> None:
    await store.outbox_ready()
    run = (await store.submit(spec(webhook={"url": "http://127.0.0.1:9/a"}), tenant="t1")).run
    assert await store.outbox_read("d1", 10, 10) == [], "run.queued is not wanted by the default events"
    await claim(store, run.id)
    await store.finish(run.id, "o1", RunStatus.SUCCEEDED, FinishFields(stop_reason=StopReason.END_TURN))
    entries = await store.outbox_read("d1", 10, 10)
    finished = next(e for e in await store.events(run.id) if e.type == "run.finished")
    assert [(e.type, e.destination, e.url, e.event_id, e.tenant) for e in entries] == [
        ("run.finished", "run", "http://127.0.0.1:9/a", finished.id, "t1")
    ]
    e = entries[0]
    assert e.mid == f"{run.id}.{finished.id}" and e.did == f"{e.mid}@run"
    assert e.event_data()["status"] == "succeeded"
    d = await store.get_delivery(e.did, tenant="t1")
    assert d is not None and d.status is DeliveryStatus.PENDING and d.attempts == 0 and d.id == e.mid
    assert await store.get_delivery(e.did, tenant="t2") is None, "another tenant's delivery is not found"


async def test_subscriptions_of_the_runs_tenant_receive_the_events_they_name(store: RunStore) -> None:
    await store.outbox_ready()
    await store.put_subscription(sub("t1", "s_all", ["run.queued", "run.started", "run.finished"]))
    await store.put_subscription(sub("t1", "s_fin", ["run.finished"]))
    await store.put_subscription(sub("t2", "s_other", ["run.queued", "run.finished"]))
    run = (
        await store.submit(spec(webhook={"url": "http://127.0.0.1:9/r", "events": ["run.started"]}), tenant="t1")
    ).run
    await claim(store, run.id)
    await store.cancel(run.id, tenant="t1")  # running: cancel_requested only
    got = sorted((e.type, e.destination) for e in await store.outbox_read("d1", 100, 10))
    assert got == [("run.queued", "s_all"), ("run.started", "run"), ("run.started", "s_all")]
    assert [s.id for s in await store.list_subscriptions("t1")] == ["s_all", "s_fin"]
    assert await store.delete_subscription("t1", "s_all") and not await store.delete_subscription("t1", "s_all")
    assert not await store.delete_subscription("t1", "s_other"), "another tenant's subscription is not found"
    await store.finish(run.id, "o1", RunStatus.CANCELLED, FinishFields(stop_reason=StopReason.CANCELLED))
    got = sorted((e.type, e.destination) for e in await store.outbox_read("d1", 100, 10))
    assert got == [("run.finished", "s_fin")]


async def test_a_delivery_ends_once_and_its_entry_is_acknowledged(store: RunStore) -> None:
    await store.outbox_ready()
    await store.put_subscription(sub("t1", "s1", ["run.queued"]))
    run = (await store.submit(spec(), tenant="t1")).run
    [e] = await store.outbox_read("d1", 10, 10)
    now = time.time()
    a1 = await store.delivery_attempted(e.did, now=now, status_code=500, error="HTTP 500")
    a2 = await store.delivery_attempted(e.did, now=now + 1, status_code=None, error="connect refused")
    assert (a1.attempts, a2.attempts) == (1, 2) and a1.first_attempt_at == a2.first_attempt_at
    assert (await store.outbox_depth()).in_flight == 1
    assert await store.delivery_done(e.did, e.qid, DeliveryOutcome.DELIVERED, now=now + 2, status_code=204)
    assert not await store.delivery_done(e.did, e.qid, DeliveryOutcome.DEAD, now=now + 3), "ended once"
    d = await store.get_delivery(e.did)
    assert d is not None and d.status is DeliveryStatus.DELIVERED and d.attempts == 2 and d.last_status_code == 204
    assert (await store.outbox_depth()).in_flight == 0
    assert await store.outbox_reclaim("d2", 0, 10) == []
    assert [x.run_id for x in await store.list_deliveries("t1")] == [run.id]


async def test_an_entry_whose_dispatcher_stopped_renewing_is_taken_over(store: RunStore) -> None:
    await store.outbox_ready()
    await store.put_subscription(sub("t1", "s1", ["run.queued"]))
    await store.submit(spec(), tenant="t1")
    [e] = await store.outbox_read("d1", 10, 10)
    assert await store.outbox_read("d2", 10, 10) == [], "a read entry is not read again"
    await store.outbox_renew("d1", [e.qid])
    assert await store.outbox_reclaim("d2", 60_000, 10) == [], "renewed: not idle"
    [taken] = await store.outbox_reclaim("d2", 0, 10)
    assert taken.did == e.did and taken.qid == e.qid


async def test_dead_deliveries_are_listed_newest_first_per_tenant(store: RunStore) -> None:
    await store.outbox_ready()
    await store.put_subscription(sub("t1", "s1", ["run.queued"]))
    await store.put_subscription(sub("t2", "s2", ["run.queued"]))
    for tenant in ("t1", "t1", "t2"):
        await store.submit(spec(), tenant=tenant)
    entries = await store.outbox_read("d1", 10, 10)
    now = time.time()
    for i, e in enumerate(entries):
        await store.delivery_done(e.did, e.qid, DeliveryOutcome.DEAD, now=now + i, error="receiver down")
    dead = await store.list_deliveries("t1", status=DeliveryStatus.DEAD)
    assert [d.tenant for d in dead] == ["t1", "t1"] and dead[0].finished_at > dead[1].finished_at  # type: ignore[operator]
    assert all(d.status is DeliveryStatus.DEAD and d.last_error == "receiver down" for d in dead)
    assert await store.list_deliveries("t1", status=DeliveryStatus.DELIVERED) == []


async def test_a_tenant_secret_is_set_once_and_rotation_keeps_the_previous_one_for_a_while(store: RunStore) -> None:
    assert await store.webhook_secrets("t1") is None
    assert await store.init_webhook_secret("t1", "whsec_a")
    assert not await store.init_webhook_secret("t1", "whsec_b"), "the first secret stays"
    s = await store.webhook_secrets("t1")
    assert s is not None and s.current == "whsec_a" and s.signing(time.time()) == ["whsec_a"]
    until = time.time() + 60
    r = await store.rotate_webhook_secret("t1", "whsec_c", previous_until=until)
    assert (r.current, r.previous) == ("whsec_c", "whsec_a")
    s = await store.webhook_secrets("t1")
    assert s is not None and s.signing(time.time()) == ["whsec_c", "whsec_a"] and s.signing(until + 1) == ["whsec_c"]
    assert await store.webhook_secrets("t2") is None


async def test_service_stats_count_runs_by_tenant_and_status_and_the_queue(store: RunStore) -> None:
    a = (await store.submit(spec(), tenant="t1")).run
    await store.submit(spec(), tenant="t1")
    await store.submit(spec(), tenant="t2")
    await claim(store, a.id)
    stats = await store.service_stats(time.time() + 5)
    assert stats.runs[("t1", "queued")] == 1 and stats.runs[("t1", "running")] == 1
    assert stats.runs[("t2", "queued")] == 1
    assert (stats.queue_waiting, stats.queue_in_flight) == (0, 3)
    assert stats.queue_oldest_age_s is not None and stats.queue_oldest_age_s >= 4.5
    await store.submit(spec(), tenant="t2")
    stats = await store.service_stats(time.time())
    assert (stats.queue_waiting, stats.queue_in_flight) == (1, 3) and stats.runs[("t2", "queued")] == 2
