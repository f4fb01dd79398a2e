"""The webhook dispatcher: a loop in every worker that delivers the outbox, at least once.

Why in the workers and not a process of its own: every deployment already runs workers, they already
hold a Redis connection and an event loop that mostly waits, and the outbox's consumer group spreads
the deliveries over all of them and hands a dead worker's deliveries to the others — there is nothing
extra to deploy, scale or watch. It never slows a run: deliveries are off the run's path (the run only
wrote the outbox entry in its commit), they have their own bounded concurrency (``webhooks.concurrency``
per worker, separate from the run slots), every attempt has a time limit, and the HTTP client is async.

One delivery: the entry is read (or taken over from a dispatcher that stopped renewing it), signed
with the tenant's secret(s) in the Standard Webhooks format (``webhook-id`` = ``<run>.<event>``, the
same on every attempt; ``webhook-timestamp``; ``webhook-signature``), POSTed, and retried with
exponential backoff and jitter (tenacity, the project's one retry library) until a 2xx or until
``webhooks.retry_window_s`` after its first attempt — measured from the time stored with the delivery,
so a takeover continues the same window. Then it is recorded ``delivered`` or ``dead`` (listed by
``GET /v1/webhooks/deliveries``) and the entry is acknowledged, in one Lua call.

Every connection goes through ``fetch_url``'s ``CheckedBackend`` (``FetchTool.transport``): the name
is resolved once per connection, each answer checked against the address rules, and the checked
address is the one connected to. A destination refused at delivery time (its name now resolves to a
private address: DNS rebinding) is dead-lettered at once, and nothing is sent to it. A Redis outage
is ridden out with the worker's one backoff (``outage.riding_out``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpcore
import httpx
from standardwebhooks import Webhook
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from conclave.config import WebhookSettings
from conclave.core import telemetry
from conclave.core.store import RunStore
from conclave.core.store_outbox import DeliveryOutcome, OutboxEntry, WebhookSecrets
from conclave.schema import DeliveryStatus
from conclave.tools.base import ToolError
from conclave.tools.fetch import Resolver, system_resolver

from .outage import nap, riding_out
from .webhooks import destination_checker

__all__ = ["WebhookDispatcher", "backoff", "signed_request"]

log = logging.getLogger(__name__)
T = TypeVar("T")

USER_AGENT = "Conclave-Webhooks/0.1"


class _Failed(Exception):
    """One attempt failed in a way worth retrying (no answer, or an answer other than 2xx)."""

    def __init__(self, status_code: int | None, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


class _Refused(Exception):
    """The address rules refuse the destination: retrying cannot help."""


def signed_request(entry: OutboxEntry, secrets: WebhookSecrets, *, now: float) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one attempt: the Standard Webhooks payload (``type``, ``timestamp``,
    ``data``) signed with every secret that signs at ``now`` (space-separated ``v1,…`` signatures)."""
    data = {"run_id": entry.run_id, "event_id": entry.event_id, **entry.event_data()}
    payload = {
        "type": entry.type,
        "timestamp": datetime.fromtimestamp(entry.ts, UTC).isoformat().replace("+00:00", "Z"),
        "data": data,
    }
    body = json.dumps(payload, separators=(",", ":"), default=str)
    stamp = datetime.fromtimestamp(int(now), UTC)
    signatures = " ".join(Webhook(s).sign(entry.mid, stamp, body) for s in secrets.signing(now))
    headers = {
        "webhook-id": entry.mid,
        "webhook-timestamp": str(int(now)),
        "webhook-signature": signatures,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }
    return body.encode(), headers


def backoff(cfg: WebhookSettings, deadline: float) -> AsyncRetrying:
    """The retries of one delivery: exponential backoff from ``backoff_initial_s`` (doubling, at most
    ``backoff_max_s``, plus up to ``backoff_initial_s`` of jitter) while the wall clock is before
    ``deadline`` (the stored first attempt + the retry window). The first attempt is always made, so
    a delivery taken over after its window still gets one last try. Only ``_Failed`` is retried."""

    def past_deadline(_state: RetryCallState) -> bool:
        return time.time() >= deadline

    return AsyncRetrying(
        retry=retry_if_exception_type(_Failed),
        stop=past_deadline,
        wait=wait_exponential_jitter(
            initial=cfg.backoff_initial_s, max=cfg.backoff_max_s, jitter=cfg.backoff_initial_s
        ),
        reraise=True,
    )


class WebhookDispatcher:
    """Delivers outbox entries until ``stop`` is set. ``name`` is its consumer name in the group;
    ``resolver`` and ``network`` are how names are resolved and connections made (the system's unless
    a test brings a network of its own)."""

    def __init__(
        self,
        store: RunStore,
        cfg: WebhookSettings,
        *,
        name: str,
        resolver: Resolver = system_resolver,
        network: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.store = store
        self.cfg = cfg
        self.name = name
        self.active: dict[str, asyncio.Task[None]] = {}  # qid -> its delivery
        self._checker = destination_checker(cfg, resolver=resolver, network=network)
        self._client: httpx.AsyncClient | None = None
        self._stop = asyncio.Event()

    async def _riding_out(self, what: str, fn: Callable[[], Awaitable[T]]) -> T | None:
        return await riding_out(what, fn, stop=self._stop, who=f"webhooks {self.name}", log=log)

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        self._client = httpx.AsyncClient(
            transport=self._checker.transport(max_connections=self.cfg.concurrency),
            timeout=self.cfg.timeout_s,
            follow_redirects=False,
            trust_env=False,
        )
        try:
            await self._riding_out("opening the outbox", self.store.outbox_ready)
            loops = [
                asyncio.ensure_future(self._read_loop(stop)),
                asyncio.ensure_future(self._reclaim_loop(stop)),
                asyncio.ensure_future(self._renew_loop(stop)),
            ]
            try:
                await stop.wait()
            finally:
                for t in [*loops, *self.active.values()]:
                    t.cancel()
                await asyncio.gather(*loops, *self.active.values(), return_exceptions=True)
        finally:
            await self._client.aclose()

    # -- taking entries ----------------------------------------------------------------------------
    def _free(self) -> int:
        return self.cfg.concurrency - len(self.active)

    def _start(self, entry: OutboxEntry) -> None:
        if entry.qid in self.active:
            return
        self.active[entry.qid] = asyncio.ensure_future(self._deliver_logged(entry))

    async def _read_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            free = self._free()
            if free <= 0:
                await asyncio.sleep(0.05)
                continue
            read = functools.partial(self.store.outbox_read, self.name, min(free, 64), 1000)
            for entry in await self._riding_out("outbox read", read) or []:
                self._start(entry)

    async def _reclaim_loop(self, stop: asyncio.Event) -> None:
        lease_ms = int(self.cfg.lease_s * 1000)

        async def reclaim() -> None:
            free = self._free()
            if free <= 0:
                return
            for entry in await self.store.outbox_reclaim(self.name, lease_ms, min(free, 64)):
                log.info("webhooks %s: took over delivery %s", self.name, entry.did)
                self._start(entry)

        while not stop.is_set():
            await nap(stop, max(0.1, self.cfg.lease_s / 2))
            await self._riding_out("outbox reclaim", reclaim)

    async def _renew_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await nap(stop, max(0.05, self.cfg.lease_s / 3))
            await self._riding_out("renewing deliveries", lambda: self.store.outbox_renew(self.name, list(self.active)))

    # -- one delivery ------------------------------------------------------------------------------
    async def _deliver_logged(self, entry: OutboxEntry) -> None:
        try:
            await self.deliver(entry)
        except asyncio.CancelledError:
            raise
        except Exception:  # the entry stays on the outbox and is taken over after the lease
            log.exception("webhooks %s: delivery %s failed unexpectedly; left for a takeover", self.name, entry.did)
        finally:
            self.active.pop(entry.qid, None)

    async def deliver(self, entry: OutboxEntry) -> DeliveryOutcome | None:
        """Deliver one entry to the end (or leave it for a takeover when Redis goes away)."""
        record = await self.store.get_delivery(entry.did)
        if record is None or record.status is not DeliveryStatus.PENDING:
            await self.store.delivery_done(entry.did, entry.qid, DeliveryOutcome.DELIVERED, now=time.time())
            return None  # ended before (delivered, then this worker died before acknowledging)
        if entry.destination != "run" and await self.store.get_subscription(entry.tenant, entry.destination) is None:
            return await self._end(entry, DeliveryOutcome.DROPPED, error="the subscription was deleted")
        secrets = await self.store.webhook_secrets(entry.tenant)
        if secrets is None:
            return await self._end(entry, DeliveryOutcome.DEAD, error="the tenant has no webhook signing secret")
        first = record.first_attempt_at.timestamp() if record.first_attempt_at else time.time()
        code: int | None = None
        try:
            async for attempt in backoff(self.cfg, first + self.cfg.retry_window_s):
                with attempt:
                    code = await self._attempt(entry, secrets)
        except _Failed as e:
            return await self._end(entry, DeliveryOutcome.DEAD, status_code=e.status_code, error=e.message)
        except _Refused as e:
            return await self._end(entry, DeliveryOutcome.DEAD, error=str(e))
        return await self._end(entry, DeliveryOutcome.DELIVERED, status_code=code)

    async def _attempt(self, entry: OutboxEntry, secrets: WebhookSecrets) -> int:
        now = time.time()
        body, headers = signed_request(entry, secrets, now=now)
        assert self._client is not None
        try:
            await self._checker.check_url(entry.url)  # scheme and host lists; the addresses at connect
            r = await self._client.post(entry.url, content=body, headers=headers)
        except ToolError as e:
            await self.store.delivery_attempted(entry.did, now=time.time(), status_code=None, error=str(e))
            telemetry.webhook_attempt("refused")
            raise _Refused(f"destination refused: {e}") from None
        except httpx.HTTPError as e:
            msg = f"{type(e).__name__}: {e}"[:500] or type(e).__name__
            await self.store.delivery_attempted(entry.did, now=now, status_code=None, error=msg)
            telemetry.webhook_attempt("network_error")
            raise _Failed(None, msg) from None
        ok = 200 <= r.status_code < 300
        err = None if ok else f"HTTP {r.status_code}: {r.text[:200]}"
        await self.store.delivery_attempted(entry.did, now=now, status_code=r.status_code, error=err)
        telemetry.webhook_attempt("ok" if ok else "http_error")
        if not ok:
            raise _Failed(r.status_code, err or "")
        return r.status_code

    async def _end(self, entry: OutboxEntry, outcome: DeliveryOutcome, **kw: Any) -> DeliveryOutcome:
        await self.store.delivery_done(
            entry.did, entry.qid, outcome, now=time.time(), keep_s=self.cfg.keep_deliveries_s, **kw
        )
        telemetry.webhook_delivery(outcome.value)
        if outcome is not DeliveryOutcome.DELIVERED:
            log.warning("webhooks: delivery %s to %s %s: %s", entry.did, entry.url, outcome.value, kw.get("error"))
        return outcome
