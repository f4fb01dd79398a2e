"""The ledger view the ``<budget>`` block reads (``RunLedger.budget_snapshot``) is kept from the
reservations' answers and the run's own commits; it must always equal what a read of the store gives."""

from __future__ import annotations

import random

import pytest

from conclave.core.ledger import RunLedger
from conclave.core.memory import InMemoryRunStore
from conclave.core.pending import PendingCommit
from conclave.core.store import LedgerSnapshot
from conclave.schema import TaskSpec

LIMITS = ("output_tokens", "model_calls", "tool:write")


async def _ledger(store: InMemoryRunStore) -> RunLedger:
    run = (await store.submit(TaskSpec(kind="chat", input="x"))).run
    entry = (await store.read_new("c", 10, 10))[0]
    await store.claim(run.id, owner="o", qid=entry.qid, worker="w", max_attempts=3)
    ledger = RunLedger(store, run.id, "o")
    caps = {"run|output_tokens": 900, "run|model_calls": 40, "run/a|output_tokens": 300, "run/b|tool:write": 9}
    await ledger.set_caps(caps)
    return ledger


def _shown(snap: LedgerSnapshot) -> tuple[dict[tuple[str, str], int], ...]:
    """What the block shows: the caps, and usage and holds of capped limits (zeros left out)."""

    def capped(m: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
        return {k: v for k, v in m.items() if v and k in snap.caps}

    return (snap.caps, capped(snap.used), capped(snap.reserved))


@pytest.mark.parametrize("seed", range(5))
async def test_the_budget_view_equals_a_read_of_the_store_after_every_commit(seed: int) -> None:
    rng = random.Random(seed)
    store = InMemoryRunStore()
    ledger = await _ledger(store)
    await ledger.budget_snapshot()
    for _ in range(120):
        scope = rng.choice(["run", "run/a", "run/b"])
        ask = {k: rng.randint(1, 40) if k == "output_tokens" else 1 for k in rng.sample(LIMITS, 2)}
        res, refusal = await ledger.reserve(scope, ask)
        if refusal is not None:
            continue
        used = {k: int(v * rng.choice([0.0, 0.5, 1.0, 2.5])) for k, v in ask.items()}  # below, at, above
        pending = PendingCommit(ledger=[RunLedger.commit_op(res, scope, used)])
        await store.commit(ledger.rid, "o", pending)
        ledger.applied(pending.ledger)  # what RunContext does after a commit
        assert _shown(await ledger.budget_snapshot()) == _shown(await store.ledger_snapshot(ledger.rid))
