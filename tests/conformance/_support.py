"""Small helpers shared by the contract suites."""

from __future__ import annotations

from conclave.core.store import ClaimOutcome, RunStore
from conclave.schema import TaskSpec


def spec(text: str = "hello", **kw: object) -> TaskSpec:
    return TaskSpec.model_validate({"kind": "chat", "input": text, **kw})


async def submit_and_claim(store: RunStore, owner: str = "o1", **kw: object) -> tuple[str, str]:
    run = (await store.submit(spec(**kw))).run  # type: ignore[arg-type]
    entries = await store.read_new("c1", 100, 100)
    qid = next(e.qid for e in entries if e.rid == run.id)
    claim = await store.claim(run.id, owner=owner, qid=qid, worker="w1", max_attempts=3)
    assert claim.outcome is ClaimOutcome.OK and claim.attempt == 1
    return run.id, qid


async def types(store: RunStore, rid: str) -> list[str]:
    return [e.type for e in await store.events(rid, count=10_000)]
