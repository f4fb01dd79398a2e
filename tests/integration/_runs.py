"""Build a ``RunContext`` for a submitted run the way a worker does, without the worker: submit,
read the queue entry, claim it with an owner token, load steps and workspace from Redis.

A second ``attempt`` with a new owner models a worker that died: the claim script hands the run to
the new owner (the old owner's commits then fail with ``LeaseLost``) and releases the reservations
the old owner left behind.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

from redis.asyncio import Redis

from conclave.agents.context import RunContext
from conclave.agents.workspace import load_workspace
from conclave.budgets.ledger import Ledger
from conclave.budgets.pricing import Pricing
from conclave.cluster.router import ModelRouter
from conclave.controller.store import RunStore
from conclave.schema import TaskSpec


@dataclass
class Runs:
    redis: Redis
    binary: Redis
    prefix: str
    store: RunStore = field(init=False)
    _qids: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.store = RunStore(self.redis, self.prefix, binary=self.binary)

    async def submit(self, spec: TaskSpec) -> str:
        await self.store.ensure_group()
        run, _, _ = await self.store.submit(spec)
        entries = await self.store.read_new("test-consumer", 10, 100)
        for e in entries:
            self._qids[e.rid] = e.qid
        assert run.id in self._qids, "the submitted run did not reach the queue"
        return run.id

    async def attempt(
        self,
        rid: str,
        router: ModelRouter,
        *,
        owner: str | None = None,
        pricing: Pricing | None = None,
        default_model: str | None = None,
    ) -> RunContext:
        """Claim ``rid`` as a new owner and build its context from what Redis holds."""
        owner = owner or f"owner-{secrets.token_hex(4)}"
        claim = await self.store.claim(rid, owner=owner, qid=self._qids[rid], worker="test-worker", max_attempts=5)
        assert claim.outcome == "ok", claim
        run = await self.store.get(rid)
        assert run is not None
        ledger = Ledger(self.redis, self.store.scripts, self.prefix, rid, owner)
        await ledger.set_caps(run.spec.budget)
        ctx = RunContext(
            store=self.store,
            run_id=rid,
            spec=run.spec,
            owner=owner,
            attempt=claim.attempt,
            steps=await self.store.load_steps(rid),
            files=await load_workspace(self.binary, self.prefix, rid),
            router=router,
            pricing=pricing or Pricing(),
            ledger=ledger,
            default_model=default_model,
            started_at=run.started_at.timestamp() if run.started_at else time.time(),
        )
        ctx.last_event_id = run.last_event_id
        return ctx

    async def start(self, spec: TaskSpec, router: ModelRouter, **kw: object) -> tuple[str, RunContext]:
        rid = await self.submit(spec)
        return rid, await self.attempt(rid, router, **kw)  # type: ignore[arg-type]

    async def events(self, rid: str) -> list[tuple[str, dict[str, object]]]:
        return [(e.type, e.data) for e in await self.store.events(rid, count=10_000)]
