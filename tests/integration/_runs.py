"""Build a ``RunContext`` for a submitted run the way a worker does, without the worker: submit,
read the queue entry, claim it with an owner token, load steps and workspace from Redis.

A second ``attempt`` with a new owner models a worker that died: the claim script hands the run to
the new owner (the old owner's commits then fail with ``LeaseLost``) and releases the reservations
the old owner left behind.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from redis.asyncio import Redis

from conclave.agents.runtime import RunEnv, open_run
from conclave.budgets.pricing import Pricing
from conclave.controller.redis_store import RedisRunStore
from conclave.core.context import RunContext
from conclave.core.router import ModelRouter
from conclave.schema import TaskSpec


@dataclass
class Runs:
    redis: Redis
    binary: Redis
    prefix: str
    store: RedisRunStore = field(init=False)
    _qids: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.store = RedisRunStore(self.redis, self.prefix, binary=self.binary)

    async def submit(self, spec: TaskSpec) -> str:
        await self.store.ready()
        run = (await self.store.submit(spec)).run
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
        env = RunEnv(router=router, pricing=pricing or Pricing(), default_model=default_model)
        return await open_run(self.store, run, owner=owner, attempt=claim.attempt, env=env)

    async def start(self, spec: TaskSpec, router: ModelRouter, **kw: object) -> tuple[str, RunContext]:
        rid = await self.submit(spec)
        return rid, await self.attempt(rid, router, **kw)  # type: ignore[arg-type]

    async def events(self, rid: str) -> list[tuple[str, dict[str, object]]]:
        return [(e.type, e.data) for e in await self.store.events(rid, count=10_000)]
