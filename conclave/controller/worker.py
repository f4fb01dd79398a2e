"""A worker: consumes the run queue and executes many runs at once on one asyncio loop.

It reads new entries with XREADGROUP, takes over entries whose worker stopped renewing its lease
with XAUTOCLAIM (idle time = the lease) and applies approval timeouts (on the store's clock) in the
same loop, renews the leases of the runs it holds every third of a lease, and listens on a pub/sub channel so a cancel reaches a running body within a second. A lost
Redis connection is survived: loops back off and retry, and runs in flight are abandoned to be
reclaimed (their committed steps are not repeated).

Run it as a Ray actor (``conclave up``), as a Ray Serve deployment (Kubernetes), or as a plain
process: ``python -m conclave.controller.worker`` (the crash tests kill that with SIGKILL).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import secrets
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import TypeVar

import uvloop

from conclave.agents.runtime import RunEnv
from conclave.config import Settings
from conclave.controller.outage import DOWN, nap, riding_out
from conclave.controller.redis_client import connect
from conclave.controller.redis_store import RedisRunStore
from conclave.controller.runner import ActiveRun, Runner
from conclave.controller.setup import configure_runtime
from conclave.controller.tenants import RESUME_EVERY_S, resume_budget_paused
from conclave.core import metrics, telemetry
from conclave.core.gc_tuning import tune_for_service
from conclave.core.ledger import HOLD_TTL_S
from conclave.core.router import ModelRouter
from conclave.core.store import QueueEntry, RunStore

__all__ = ["Worker", "connect", "main"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: What a Redis outage raises (a full Redis too): the errors the worker rides out and retries, nothing else.
_DOWN = DOWN


class Worker:
    def __init__(
        self,
        settings: Settings,
        router: ModelRouter,
        *,
        redis_url: str | None = None,
        store: RunStore | None = None,
        name: str | None = None,
        concurrency: int | None = None,
    ) -> None:
        if (redis_url is None) == (store is None):
            raise ValueError("a worker needs exactly one of redis_url and store")
        self.settings = settings
        self.router = router
        self.redis_url = redis_url
        self._given_store = store
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
        self.concurrency = concurrency or settings.worker_concurrency
        self.lease_ms = int(settings.lease_seconds * 1000)
        self.budget_resume_every_s = RESUME_EVERY_S
        self.active: dict[str, ActiveRun] = {}
        self._slots = asyncio.Semaphore(self.concurrency)
        self._stop = asyncio.Event()
        self.completed: dict[str, int] = {}
        configure_runtime(settings)
        telemetry.setup_telemetry("conclave-worker")
        metrics.configure(max_tenants=settings.metrics.max_tenants)
        self.metrics_port: int | None = None

    async def run(self) -> None:
        """Serve until ``stop()``; in-flight runs are abandoned to be reclaimed elsewhere."""
        if self._given_store is not None:
            self.store: RunStore = self._given_store
        else:
            assert self.redis_url is not None
            self.store = RedisRunStore(
                connect(self.redis_url), self.settings.key_prefix, binary=connect(self.redis_url, decode=False)
            )
        env = RunEnv(
            router=self.router, pricing=self.settings.pricing(), default_model=self.settings.resolved_default_model()
        )
        self.runner = Runner(self.store, env, worker=self.name, max_attempts=self.settings.max_attempts)
        await self._riding_out("connecting", self.store.ready)
        days = self.settings.retention_days
        await self._riding_out(
            "setting retention", lambda: self.store.set_retention(None, days * 86400 if days else None)
        )
        log.info("worker %s serving (concurrency %d)", self.name, self.concurrency)
        loops = [
            asyncio.ensure_future(self._read_loop()),
            asyncio.ensure_future(self._reclaim_loop()),
            asyncio.ensure_future(self._renew_loop()),
            asyncio.ensure_future(self._cancel_loop()),
            asyncio.ensure_future(self._retention_loop()),
            asyncio.ensure_future(self._budget_loop()),
            *self._reporting_loops(),
        ]
        try:
            await self._stop.wait()
        finally:
            for t in loops:
                t.cancel()
            runs = [a.task for a in self.active.values() if a.task]
            for t in runs:
                t.cancel()
            await asyncio.gather(*loops, *runs, return_exceptions=True)
            if self._given_store is None:
                await self.store.close()

    def stop(self) -> None:
        self._stop.set()

    async def _nap(self, seconds: float) -> None:
        """A backoff pause that ends early when the worker stops."""
        await nap(self._stop, seconds)

    async def _riding_out(self, what: str, fn: Callable[[], Awaitable[T]]) -> T | None:
        """``fn()``, retried through a Redis outage (``outage.riding_out``: the one backoff, shared
        with the dispatcher and the scheduler) until it succeeds or the worker stops (then None); any
        other error is raised. The worker's loops all take work this way."""
        return await riding_out(what, fn, stop=self._stop, who=f"worker {self.name}", log=log)

    def _reporting_loops(self) -> list[asyncio.Future[None]]:
        """What every worker runs besides runs: the webhook dispatcher, the scheduler, and a
        ``/metrics`` listener (each configurable; see ``controller/dispatch.py``, ``schedules.py``)."""
        from conclave.controller.dispatch import WebhookDispatcher
        from conclave.controller.schedules import Scheduler

        m = self.settings.metrics
        if m.worker_port is not None and self.metrics_port is None:
            self.metrics_port = metrics.serve_metrics(m.worker_port, span=m.port_span, host=m.host)
        loops: list[asyncio.Future[None]] = []
        if self.settings.webhooks.enabled:
            self.dispatcher = WebhookDispatcher(self.store, self.settings.webhooks, name=self.name)
            loops.append(asyncio.ensure_future(self.dispatcher.run(self._stop)))
        if self.settings.schedules.enabled:
            loops.append(asyncio.ensure_future(Scheduler(self.store, self.settings, name=self.name).run(self._stop)))
        return loops

    # -- taking work ----------------------------------------------------------------------------
    def _free(self) -> int:
        return self.concurrency - len(self.active)

    def _start(self, entry: QueueEntry) -> None:
        # An entry without a run id is claimed too: the claim dead-letters it once (it never stalls us).
        slot = entry.rid or f"?{entry.qid}"
        if slot in self.active:
            return
        a = ActiveRun(rid=entry.rid, owner=f"{self.name}:{secrets.token_hex(4)}", qid=entry.qid)
        self.active[slot] = a
        a.task = asyncio.ensure_future(self._execute(a))

    async def _execute(self, a: ActiveRun) -> None:
        try:
            async with self._slots:
                outcome = await self.runner.execute(a)
            self.completed[outcome] = self.completed.get(outcome, 0) + 1
        except asyncio.CancelledError:
            pass
        except _DOWN as e:
            log.warning("run %s: Redis unreachable during claim (%s); left for reclaim", a.rid, e)
        except Exception:
            log.exception("run %s: unexpected worker error; left for reclaim", a.rid)
        finally:
            self.active.pop(a.rid or f"?{a.qid}", None)

    async def _read_loop(self) -> None:
        while not self._stop.is_set():
            free = self._free()
            if free <= 0:
                await asyncio.sleep(0.05)
                continue
            entries = await self._riding_out(
                "queue read", functools.partial(self.store.read_new, self.name, min(free, 32), 1000)
            )
            for entry in entries or []:
                self._start(entry)

    async def _reclaim_loop(self) -> None:
        interval = max(0.2, self.settings.lease_seconds / 2)

        async def reclaim() -> None:
            free = self._free()
            if free > 0:
                taken = await self.store.reclaim(self.name, self.lease_ms, min(free, 32))
                telemetry.redelivered(len(taken))
                for entry in taken:
                    self._start(entry)
            depth = await self.store.queue_depth()
            telemetry.set_queue_depth(depth.waiting, depth.in_flight)
            # calls that waited for approval past their timeout: denied (the run goes on) or failed
            expired = await self.store.expire_approvals()
            if expired:
                log.info("worker %s: %d approvals timed out", self.name, expired)

        while not self._stop.is_set():
            await self._riding_out("reclaim", reclaim)
            await self._nap(interval)

    async def _renew_loop(self) -> None:
        """Every third of a lease: renew the leases of the runs held here and the ledger holds of their
        calls in flight, and refresh whether each run's tenant or key has a budget (one set mid-run)."""
        interval = max(0.1, self.settings.lease_seconds / 3)

        async def renew() -> list[str]:
            held = [a for a in self.active.values() if a.ctx is not None]
            lost = await self.store.renew(self.name, [(a.rid, a.owner, a.qid) for a in held])
            outer = await self.store.renew_holds([(a.rid, a.owner) for a in held], ttl_s=HOLD_TTL_S)
            for a in held:
                if a.ctx is not None:
                    a.ctx.ledger.outer = a.rid in outer
            return lost

        while not self._stop.is_set():
            await self._nap(interval)
            for rid in await self._riding_out("lease renewal", renew) or []:
                gone = self.active.get(rid)
                if gone is not None and gone.ctx is not None:
                    log.warning("run %s: lease lost; stopping this attempt", rid)
                    telemetry.leases_lost()
                    gone.lease_lost = True
                    if gone.body is not None:
                        gone.body.cancel()

    async def _retention_loop(self) -> None:
        """Delete finished runs whose retention has passed (every worker sweeps; the sweep is atomic)."""

        async def sweep() -> None:
            while await self.store.purge_expired(500) == 500:
                pass

        while not self._stop.is_set():
            await self._riding_out("retention sweep", sweep)
            await self._nap(30.0)

    async def _budget_loop(self) -> None:
        """Resume runs that a tenant's or key's budget paused, once it has room again (a period rolled
        over); a change of the budget resumes them at once (``TenantAdmin``)."""

        async def look() -> None:
            for tenant in await self.store.tenants():
                if await self.store.paused_runs(tenant, reason="tenant_budget"):
                    await resume_budget_paused(self.store, tenant)

        while not self._stop.is_set():
            await self._nap(self.budget_resume_every_s)
            await self._riding_out("budget resume", look)

    async def _cancel_loop(self) -> None:
        async def listen() -> None:
            async for rid in self.store.cancels():
                a = self.active.get(rid)
                if a is not None and a.ctx is not None:
                    a.cancel_reason = "user"
                    a.ctx.cancel_requested.set()

        while not self._stop.is_set():
            await self._riding_out("cancel channel", listen)


def local_router(settings: Settings) -> ModelRouter:
    """Engines in this process: for the standalone worker (tests, single-process use)."""
    from conclave.cluster.engines import build_engine
    from conclave.cluster.router import LocalRouter

    return LocalRouter(
        {m.name: build_engine(m) for m in settings.models},
        {m.name: m.context_window for m in settings.models if m.context_window},
        retry={m.name: m.retry for m in settings.models},
    )


def main(argv: list[str] | None = None) -> None:
    """``python -m conclave.controller.worker``: one worker process with in-process engines."""
    from conclave.config import load_settings

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--config", help="conclave.toml to read")
    p.add_argument("--redis-url", required=True)
    p.add_argument("--name")
    p.add_argument("--concurrency", type=int)
    args = p.parse_args(argv)
    logging.basicConfig(level=os.environ.get("CONCLAVE_LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(message)s")
    settings = load_settings(args.config)
    worker = Worker(
        settings, local_router(settings), redis_url=args.redis_url, name=args.name, concurrency=args.concurrency
    )

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()

    tune_for_service()  # startup's objects frozen out of the collector's view, thresholds raised
    # The event loop Ray gives its actors (a worker in ``conclave up`` is one): uvloop's, whose
    # socket transports cost the worker less CPU per commit than the standard library's.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve())


if __name__ == "__main__":
    main()
