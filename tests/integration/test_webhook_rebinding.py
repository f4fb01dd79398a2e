"""Webhook deliveries connect to the address they checked: the dispatcher's connections go through
``fetch_url``'s ``CheckedBackend``, so a destination whose name passed the check at submission and
then rebinds to a private address is refused at delivery — nothing is sent — and dead-lettered.

The dispatcher runs over the laboratory network (``tests/_lab_network.py``): a "public" address is
routed to a real receiver on 127.0.0.1, and the test's resolver decides what the name resolves to on
each lookup. The store is a real Valkey."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from conclave.config import Settings
from conclave.controller.dispatch import WebhookDispatcher
from conclave.controller.errors import InvalidInput
from conclave.controller.redis_server import EmbeddedRedis
from conclave.controller.redis_store import RedisRunStore
from conclave.controller.webhooks import check_destination, new_secret
from conclave.schema import DeliveryStatus, TaskSpec, WebhookDelivery
from tests._lab_network import LabNetwork, Resolver

from ._helpers import sim_settings
from ._receiver import Receiver, receiver

PUBLIC = "93.184.215.14"  # globally routed; the lab network routes it to the receiver
FAST = {"backoff_initial_s": 0.05, "backoff_max_s": 0.2, "lease_s": 1.0, "retry_window_s": 1.0}


@pytest.fixture
async def store(redis: Redis, redis_server: EmbeddedRedis, prefix: str) -> AsyncIterator[RedisRunStore]:
    s = RedisRunStore(redis, prefix, binary=Redis.from_url(redis_server.url))
    await s.ready()
    await s.init_webhook_secret("default", new_secret())
    yield s


async def _deliver_once(
    store: RedisRunStore, settings: Settings, resolver: Resolver, net: LabNetwork, url: str
) -> WebhookDelivery:
    """Queue a run whose webhook wants ``run.queued`` (its outbox entry is written at submission) and
    run a dispatcher until that delivery has ended."""
    await store.submit(TaskSpec(kind="chat", input="hi", webhook={"url": url, "events": ["run.queued"]}))
    stop = asyncio.Event()
    dispatcher = WebhookDispatcher(store, settings.webhooks, name="lab", resolver=resolver, network=net)
    task = asyncio.ensure_future(dispatcher.run(stop))
    try:
        async with asyncio.timeout(30):
            while True:
                [d] = await store.list_deliveries("default")
                if d.status is not DeliveryStatus.PENDING:
                    return d
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def _lab(rec: Receiver, answers: list[list[str]]) -> tuple[Resolver, LabNetwork, str, int]:
    """A resolver that answers ``answers`` for ``hooks.test`` (one list per lookup, the last repeats),
    a network that routes ``PUBLIC`` to the receiver, and the destination URL on the receiver's port."""
    port = int(rec.url.rsplit(":", 1)[1].split("/", 1)[0])
    resolver = Resolver({"hooks.test": answers})
    return resolver, LabNetwork({PUBLIC: port}, resolver), f"http://hooks.test:{port}/hook", port


async def test_a_destination_resolving_to_a_public_address_is_delivered_to_that_address(
    store: RedisRunStore, prefix: str
) -> None:
    settings = sim_settings(prefix, webhooks=FAST)
    with receiver() as rec:
        resolver, net, url, port = _lab(rec, [[PUBLIC]])
        await check_destination(settings.webhooks, url, field="webhook.url", resolver=resolver)
        d = await _deliver_once(store, settings, resolver, net, url)
    assert d.status is DeliveryStatus.DELIVERED, d.last_error
    assert [q.answered for q in rec.requests] == [204]
    assert rec.requests[0].headers["host"] == f"hooks.test:{port}", "the Host header names the host"
    assert net.connects == [(PUBLIC, port)], "the connection went to the checked address, not the name"


async def test_a_destination_that_rebinds_to_loopback_after_submission_gets_nothing_and_is_dead_lettered(
    store: RedisRunStore, prefix: str
) -> None:
    settings = sim_settings(prefix, webhooks=FAST)
    with receiver() as rec:
        resolver, net, url, _ = _lab(rec, [[PUBLIC], ["127.0.0.1"]])
        await check_destination(settings.webhooks, url, field="webhook.url", resolver=resolver)  # public now
        d = await _deliver_once(store, settings, resolver, net, url)
    assert d.status is DeliveryStatus.DEAD
    assert d.last_error and "resolves to 127.0.0.1, a private, loopback or reserved address" in d.last_error
    assert d.attempts == 1, "a refused destination is not retried"
    assert rec.requests == [], "nothing reached the receiver"
    assert net.connects == [], "no connection was even opened"


async def test_a_name_that_resolves_to_a_private_address_is_refused_at_submission() -> None:
    cfg = Settings.model_validate({}).webhooks
    resolver = Resolver({"intranet.test": [["10.1.2.3"]]})
    with pytest.raises(InvalidInput) as refused:
        await check_destination(cfg, "http://intranet.test/hook", field="webhook.url", resolver=resolver)
    assert refused.value.field == "webhook.url"
    assert "'intranet.test' resolves to 10.1.2.3" in refused.value.message
