"""The retention part of the ``RunStore`` contract (``conclave.core.store_retention``), on every backend."""

from __future__ import annotations

import asyncio

from conclave.core.pending import PendingCommit
from conclave.core.store import FinishFields, RunStore
from conclave.core.workspace import WorkspaceOp, WorkspaceOpKind
from conclave.schema import RunStatus, StopReason

from .conftest import spec, submit_and_claim


async def finished_run(store: RunStore, tenant_text: str = "x", **kw: object) -> str:
    rid, _ = await submit_and_claim(store, **kw)
    ws = {"a.md": WorkspaceOp(WorkspaceOpKind.WRITE, "a.md", b"kept until the policy says")}
    await store.commit(rid, "o1", PendingCommit(events=[("log", {})], workspace=ws), step_key="s")
    await store.finish(rid, "o1", RunStatus.SUCCEEDED, FinishFields(stop_reason=StopReason.END_TURN))
    return rid


async def test_a_finished_run_is_purged_once_its_retention_passes(store: RunStore) -> None:
    await store.set_retention(None, 0.3)
    rid = await finished_run(store, idempotency_key="once")
    running, _ = await submit_and_claim(store)
    assert await store.purge_expired() == 0, "not yet"
    await asyncio.sleep(0.4)
    assert await store.purge_expired() == 1
    assert await store.get(rid) is None
    assert await store.events(rid) == [] and await store.load_steps(rid) == {} and await store.load_workspace(rid) == {}
    assert rid not in [r.id for r in (await store.list_runs(tenant="default")).runs]
    assert rid not in [r.id for r in (await store.list_runs(tenant="default", status=RunStatus.SUCCEEDED)).runs]
    again = await store.submit(spec(idempotency_key="once"))
    assert again.created, "the purged run's idempotency key is free again"
    assert await store.get(running) is not None, "a run that has not ended is never purged"


async def test_a_tenants_retention_wins_over_the_default_and_none_keeps_for_ever(store: RunStore) -> None:
    await store.set_retention(None, None)
    assert await store.get_retention("t") is None
    rid = await finished_run(store)
    await asyncio.sleep(0.05)
    assert await store.purge_expired() == 0 and await store.get(rid) is not None
    await store.set_retention(None, 3600)
    await store.set_retention("default", 0.1)
    assert await store.get_retention("default") == 0.1 and await store.get_retention("other") == 3600
    short = await finished_run(store)
    await asyncio.sleep(0.2)
    assert await store.purge_expired() == 1 and await store.get(short) is None
    await store.set_retention("default", None)
    assert await store.get_retention("default") == 3600


async def test_an_explicit_purge_deletes_a_tenants_runs_older_than_asked(store: RunStore) -> None:
    old = await finished_run(store)
    await asyncio.sleep(0.3)
    new = await finished_run(store)
    assert await store.purge_finished("default", older_than_s=0.2) == 1
    assert await store.get(old) is None and await store.get(new) is not None
    assert await store.purge_finished("someone-else", older_than_s=0) == 0
