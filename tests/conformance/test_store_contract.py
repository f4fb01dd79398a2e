"""The ``RunStore`` contract, one suite for every backend (``conclave.core.store`` states it).

Parametrised by backend: the in-memory store, and the Redis store on the session's server — the bundled
Valkey in the main pass, Debian's redis-server when CI reruns the Redis tests against it
(``CONCLAVE_TEST_REDIS_SERVER``). A backend is a ``RunStore`` only if every test here passes on it.
"""

from __future__ import annotations

import asyncio

import pytest

from conclave.core.ledger import RunLedger
from conclave.core.pending import LedgerOp, PendingCommit
from conclave.core.store import ClaimOutcome, FinishFields, LeaseLost, Reserved, RunStore
from conclave.core.workspace import WorkspaceOp, WorkspaceOpKind
from conclave.schema import ApiKey, RunStatus, StopReason

from .conftest import spec, submit_and_claim, types

# -- submission and reading -------------------------------------------------------------------------


async def test_submit_queues_the_run_with_its_first_event(store: RunStore) -> None:
    res = await store.submit(spec(), tenant="t1")
    assert res.created and res.run.status is RunStatus.QUEUED and res.run.tenant == "t1"
    events = await store.events(res.run.id)
    assert [(e.id, e.type) for e in events] == [(1, "run.queued")]
    assert (await store.queue_depth()).waiting == 1
    got = await store.get(res.run.id)
    assert got is not None and got.spec == res.run.spec and got.last_event_id == 1


async def test_an_idempotency_key_returns_the_first_run_and_its_hash(store: RunStore) -> None:
    a = await store.submit(spec("one", idempotency_key="k"), spec_hash="h1")
    b = await store.submit(spec("two", idempotency_key="k"), spec_hash="h2")
    assert a.created and not b.created and b.run.id == a.run.id and b.spec_hash == "h1"
    other = await store.submit(spec("one", idempotency_key="k"), tenant="t2", spec_hash="h1")
    assert other.created and other.run.id != a.run.id, "keys are per tenant"
    assert (await store.queue_depth()).waiting == 2


async def test_another_tenants_run_is_not_found(store: RunStore) -> None:
    run = (await store.submit(spec(), tenant="a")).run
    assert await store.get(run.id, tenant="b") is None
    assert (await store.cancel(run.id, tenant="b")).outcome.value == "missing"
    assert (await store.list_runs(tenant="b")).runs == []
    assert [r.id for r in (await store.list_runs(tenant="a")).runs] == [run.id]


async def test_list_is_newest_first_paginated_and_filtered(store: RunStore) -> None:
    ids = []
    for i in range(7):
        ids.append((await store.submit(spec(f"run {i}", kind="agent" if i % 2 else "chat"))).run.id)
        await asyncio.sleep(0.002)  # distinct creation milliseconds
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.list_runs(tenant="default", limit=3, cursor=cursor)
        seen += [r.id for r in page.runs]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    agents = await store.list_runs(tenant="default", kind="agent")
    assert [r.id for r in agents.runs] == [ids[5], ids[3], ids[1]]
    queued_chat = await store.list_runs(tenant="default", status=RunStatus.QUEUED, kind="chat", limit=2)
    assert [r.id for r in queued_chat.runs] == [ids[6], ids[4]] and queued_chat.next_cursor is not None


# -- claiming, leases and fencing ---------------------------------------------------------------------


async def test_a_new_entry_is_delivered_once_and_reclaimed_only_when_idle(store: RunStore) -> None:
    run = (await store.submit(spec())).run
    first = await store.read_new("c1", 10, 100)
    assert [e.rid for e in first] == [run.id]
    assert await store.read_new("c2", 10, 50) == []
    assert await store.reclaim("c2", 60_000, 10) == [], "not idle long enough"
    await asyncio.sleep(0.05)
    taken = await store.reclaim("c2", 10, 10)
    assert [e.rid for e in taken] == [run.id]
    assert (await store.queue_depth()).in_flight == 1


async def test_renewing_keeps_an_entry_from_being_reclaimed(store: RunStore) -> None:
    # Renewed every 0.3 s for 1.5 s, an entry is never 1 s idle; left alone, it is reclaimed. The
    # margins are wide so that a loaded machine's scheduling delay between a renewal and the next
    # reclaim (it was over 30 ms once, when the bar was 60 ms) cannot make the test fail.
    rid, qid = await submit_and_claim(store)
    for _ in range(5):
        await asyncio.sleep(0.3)
        assert await store.renew("c1", [(rid, "o1", qid)]) == []
        assert await store.reclaim("c2", 1000, 10) == []
    assert await store.renew("c1", [(rid, "someone-else", qid)]) == [rid]
    await asyncio.sleep(1.05)
    assert [e.rid for e in await store.reclaim("c2", 1000, 10)] == [rid]


async def test_a_second_owner_fences_the_first(store: RunStore) -> None:
    rid, qid = await submit_and_claim(store, owner="o1")
    claim = await store.claim(rid, owner="o2", qid=qid, worker="w2", max_attempts=3)
    assert claim.outcome is ClaimOutcome.OK and claim.attempt == 2
    assert (await types(store, rid))[-2:] == ["run.started", "run.resumed"]
    with pytest.raises(LeaseLost):
        await store.commit(rid, "o1", PendingCommit(events=[("log", {"late": True})]))
    assert not await store.finish(rid, "o1", RunStatus.SUCCEEDED, FinishFields(stop_reason=StopReason.END_TURN))
    again = await store.claim(rid, owner="o2", qid=qid, worker="w2", max_attempts=3)
    assert again.outcome is ClaimOutcome.OK and again.attempt == 2, "re-claiming one's own run counts nothing"


async def test_a_run_claimed_too_often_is_dead_lettered(store: RunStore) -> None:
    rid, qid = await submit_and_claim(store)
    assert (await store.claim(rid, owner="o2", qid=qid, worker="w", max_attempts=2)).outcome is ClaimOutcome.OK
    dead = await store.claim(rid, owner="o3", qid=qid, worker="w", max_attempts=2)
    assert dead.outcome is ClaimOutcome.DEAD
    run = await store.get(rid)
    assert run is not None and run.status is RunStatus.FAILED and run.stop_reason is StopReason.CRASHED
    assert [d.rid for d in await store.dead_letters()] == [rid]
    assert (await store.queue_depth()).in_flight == 0


async def test_an_entry_naming_no_run_is_dead_lettered_once_and_acknowledged(store: RunStore) -> None:
    await store.submit(spec())
    (entry,) = await store.read_new("c1", 10, 100)
    missing = await store.claim("run_nope", owner="o", qid=entry.qid, worker="w", max_attempts=3)
    assert missing.outcome is ClaimOutcome.MISSING
    assert [d.rid for d in await store.dead_letters()] == ["run_nope"]
    assert (await store.queue_depth()).in_flight == 0


async def test_a_poison_run_fails_once_with_its_reason(store: RunStore) -> None:
    rid, qid = await submit_and_claim(store)
    assert await store.poison(rid, owner="o1", qid=qid, reason="spec no longer parses")
    run = await store.get(rid)
    assert run is not None and run.status is RunStatus.FAILED and run.error == "spec no longer parses"
    assert [(d.rid, d.reason) for d in await store.dead_letters()] == [(rid, "spec no longer parses")]
    assert (await types(store, rid))[-1] == "run.finished"
    claim = await store.claim(rid, owner="o2", qid=qid, worker="w", max_attempts=3)
    assert claim.outcome is ClaimOutcome.TERMINAL


# -- steps, events and the workspace ---------------------------------------------------------------


async def test_commits_append_gapless_events_and_a_step_applies_once(store: RunStore) -> None:
    rid, _ = await submit_and_claim(store)
    pending = PendingCommit(events=[("log", {"i": 1}), ("log", {"i": 2})])
    first = await store.commit(rid, "o1", pending, step_key="s/1", step_value='{"v": 1}')
    again = await store.commit(rid, "o1", pending, step_key="s/1", step_value='{"v": 1}')
    assert first.last_event_id == again.last_event_id == 4
    assert [e.id for e in await store.events(rid)] == [1, 2, 3, 4]
    assert await store.load_steps(rid) == {"s/1": '{"v": 1}'}
    assert [e.id for e in await store.events(rid, after=2, count=1)] == [3]


async def test_a_commit_retried_with_its_id_applies_once(store: RunStore) -> None:
    rid, _ = await submit_and_claim(store)
    pending = PendingCommit(events=[("log", {"loose": True})])
    await store.commit(rid, "o1", pending, commit_id="c-1")
    await store.commit(rid, "o1", pending, commit_id="c-1")
    await store.commit(rid, "o1", pending, commit_id="c-2")
    assert (await types(store, rid)).count("log") == 2


async def test_a_retried_commit_of_an_owner_that_lost_the_run_is_still_answered(store: RunStore) -> None:
    rid, qid = await submit_and_claim(store)
    await store.commit(rid, "o1", PendingCommit(events=[("log", {})]), step_key="s")
    await store.claim(rid, owner="o2", qid=qid, worker="w2", max_attempts=3)
    # The reply to o1's commit was lost and redis-py re-sent it: it applied, so it is answered, not fenced.
    await store.commit(rid, "o1", PendingCommit(events=[("log", {})]), step_key="s")
    assert (await types(store, rid)).count("log") == 1


async def test_workspace_writes_and_deletes_commit_with_the_step_bytes_intact(store: RunStore) -> None:
    rid, _ = await submit_and_claim(store)
    blob = bytes(range(256))
    ops = {
        "a.md": WorkspaceOp(WorkspaceOpKind.WRITE, "a.md", "héllo".encode()),
        "b.bin": WorkspaceOp(WorkspaceOpKind.WRITE, "b.bin", blob),
        "c.txt": WorkspaceOp(WorkspaceOpKind.WRITE, "c.txt", b"gone soon"),
    }
    await store.commit(rid, "o1", PendingCommit(workspace=ops), step_key="w1")
    await store.commit(rid, "o1", PendingCommit(workspace={"c.txt": WorkspaceOp(WorkspaceOpKind.DELETE, "c.txt")}))
    files = await store.load_workspace(rid)
    assert files == {"a.md": "héllo".encode(), "b.bin": blob}
    assert await store.read_file(rid, "b.bin") == blob
    assert await store.read_file(rid, "c.txt") is None


async def test_a_blocking_read_returns_when_an_event_arrives(store: RunStore) -> None:
    rid, _ = await submit_and_claim(store)
    last = (await store.get(rid)).last_event_id  # type: ignore[union-attr]

    async def later() -> None:
        await asyncio.sleep(0.1)
        await store.commit(rid, "o1", PendingCommit(events=[("log", {"x": 1})]))

    task = asyncio.ensure_future(later())
    got = await store.events(rid, after=last, block_ms=3000)
    await task
    assert [e.type for e in got] == ["log"]


# -- ending and cancelling ---------------------------------------------------------------------------


async def test_finish_records_the_end_releases_holds_and_is_final(store: RunStore) -> None:
    rid, qid = await submit_and_claim(store)
    ledger = RunLedger(store, rid, "o1")
    await ledger.set_caps({"run|output_tokens": 100})
    res, refusal = await ledger.reserve("run", {"output_tokens": 60})
    assert res and refusal is None
    fields = FinishFields(stop_reason=StopReason.END_TURN, output="done", result={"n": 1})
    assert await store.finish(rid, "o1", RunStatus.SUCCEEDED, fields)
    assert await store.finish(rid, "o1", RunStatus.SUCCEEDED, fields), "a retried finish is answered"
    run = await store.get(rid)
    assert run is not None and run.status is RunStatus.SUCCEEDED and run.output == "done" and run.result == {"n": 1}
    assert run.finished_at is not None
    assert (await types(store, rid))[-1] == "run.finished" and (await types(store, rid)).count("run.finished") == 1
    assert sum((await store.ledger_snapshot(rid)).reserved.values()) == 0
    assert (await store.queue_depth()).in_flight == 0
    assert (await store.claim(rid, owner="o2", qid=qid, worker="w", max_attempts=3)).outcome is ClaimOutcome.TERMINAL


async def test_cancel_ends_a_queued_run_and_tells_the_worker_of_a_running_one(store: RunStore) -> None:
    queued = (await store.submit(spec())).run
    assert (await store.cancel(queued.id, tenant="default")).label == "cancelled"
    run = await store.get(queued.id)
    assert run is not None and run.status is RunStatus.CANCELLED
    assert (await store.cancel(queued.id, tenant="default")).label == "cancelled", "the terminal status is reported"

    rid, _ = await submit_and_claim(store)
    told: list[str] = []

    async def watch() -> None:
        async for r in store.cancels():
            told.append(r)
            return

    watcher = asyncio.ensure_future(watch())
    await asyncio.sleep(0.2)  # subscribed
    assert (await store.cancel(rid, tenant="default")).label == "cancelling"
    await asyncio.wait_for(watcher, 5)
    assert told == [rid]
    res = await store.commit(rid, "o1", PendingCommit(events=[("log", {})]))
    assert res.cancel_requested


# -- the ledger ---------------------------------------------------------------------------------


async def test_caps_are_set_once_and_a_reservation_holds_in_every_scope(store: RunStore) -> None:
    rid, _ = await submit_and_claim(store)
    ledger = RunLedger(store, rid, "o1")
    await ledger.set_caps({"run|output_tokens": 100, "run/a|output_tokens": 50})
    await ledger.set_caps({"run|output_tokens": 999})
    snap = await ledger.snapshot()
    assert snap.caps[("run", "output_tokens")] == 100, "a resumed run keeps the caps it started with"
    res, refusal = await ledger.reserve("run/a", {"output_tokens": 40, "model_calls": 1})
    assert res and refusal is None
    snap = await ledger.snapshot()
    assert snap.reserved[("run", "output_tokens")] == 40 and snap.reserved[("run/a", "output_tokens")] == 40
    _, refusal = await ledger.reserve("run/a", {"output_tokens": 20})
    assert refusal is not None and (refusal.scope, refusal.limit, refusal.room) == ("run/a", "output_tokens", 10)
    assert (await ledger.snapshot()).reserved[("run", "output_tokens")] == 40, "a refusal holds nothing"
    op = RunLedger.commit_op(res, "run/a", {"output_tokens": 25}, {"model|m|output_tokens": 25})
    await store.commit(rid, "o1", PendingCommit(ledger=[op]))
    snap = await ledger.snapshot()
    assert snap.reserved.get(("run", "output_tokens"), 0) == 0
    assert snap.used[("run", "output_tokens")] == 25 and snap.used[("run/a", "output_tokens")] == 25
    assert snap.by[("model", "m", "output_tokens")] == 25
    assert snap.left("run/a", "output_tokens") == 25


async def test_expired_holds_are_swept_and_another_owners_holds_released_on_claim(store: RunStore) -> None:
    rid, qid = await submit_and_claim(store)
    ledger = RunLedger(store, rid, "o1")
    await ledger.set_caps({"run|output_tokens": 100})
    await ledger.reserve("run", {"output_tokens": 90}, ttl_s=0.2)
    _, refusal = await ledger.reserve("run", {"output_tokens": 50})
    assert refusal is not None and refusal.room == 10
    await asyncio.sleep(0.3)
    res, refusal = await ledger.reserve("run", {"output_tokens": 70})
    assert res and refusal is None, "the expired hold was swept"
    await store.claim(rid, owner="o2", qid=qid, worker="w2", max_attempts=3)
    assert sum((await store.ledger_snapshot(rid)).reserved.values()) == 0, "o1's hold went with its lease"


async def test_a_retried_reservation_holds_once(store: RunStore) -> None:
    rid, _ = await submit_and_claim(store)
    await store.set_caps(rid, "o1", {"run|model_calls": 5})
    for _ in range(3):
        assert isinstance(
            await store.reserve(rid, "o1", "r-1", scopes=["run"], amounts={"model_calls": 2}, ttl_s=60), Reserved
        )
    assert (await store.ledger_snapshot(rid)).reserved[("run", "model_calls")] == 2


async def test_a_worker_whose_run_was_taken_over_cannot_reserve(store: RunStore) -> None:
    """A worker fenced out (its lease ran out and another claimed the run) gets ``LeaseLost`` from
    ``reserve`` and holds nothing: its hold would outlive it, unreleased, and the run's new owner
    would find its budget spent by a call that is never made (seen under the fault proxy)."""
    rid, qid = await submit_and_claim(store, owner="o1")
    await store.set_caps(rid, "o1", {"run|model_calls": 3})
    claim = await store.claim(rid, owner="o2", qid=qid, worker="w2", max_attempts=3)
    assert claim.outcome is ClaimOutcome.OK
    with pytest.raises(LeaseLost):
        await store.reserve(rid, "o1", "r-stale", scopes=["run"], amounts={"model_calls": 2}, ttl_s=60)
    assert sum((await store.ledger_snapshot(rid)).reserved.values()) == 0
    assert isinstance(
        await store.reserve(rid, "o2", "r-new", scopes=["run"], amounts={"model_calls": 3}, ttl_s=60), Reserved
    )


async def test_a_reservation_answers_with_its_scopes_caps_usage_and_holds(store: RunStore) -> None:
    """What the ``<budget>`` block needs comes back with the hold, so knowing the budget costs no read of
    its own: the caps, committed usage and holds of the scopes reserved in, right after the hold."""
    rid, _ = await submit_and_claim(store)
    await store.set_caps(rid, "o1", {"run|output_tokens": 100, "run/a|output_tokens": 50, "run/b|model_calls": 9})
    await store.commit(
        rid, "o1", PendingCommit(ledger=[LedgerOp(res=None, scopes=("run", "run/a"), used={"output_tokens": 10})])
    )
    got = await store.reserve(rid, "o1", "r-1", scopes=["run", "run/a"], amounts={"output_tokens": 30}, ttl_s=60)
    assert isinstance(got, Reserved)
    assert got.view.caps == {("run", "output_tokens"): 100, ("run/a", "output_tokens"): 50}, (
        "only the scopes reserved in"
    )
    assert got.view.used == {("run", "output_tokens"): 10, ("run/a", "output_tokens"): 10}
    assert got.view.reserved == {("run", "output_tokens"): 30, ("run/a", "output_tokens"): 30}
    again = await store.reserve(rid, "o1", "r-1", scopes=["run", "run/a"], amounts={"output_tokens": 30}, ttl_s=60)
    assert isinstance(again, Reserved) and again.view == got.view, "a retried reservation answers the same"


# -- keys -----------------------------------------------------------------------------------------


async def test_keys_are_stored_by_hash_listed_per_tenant_and_revoked(store: RunStore) -> None:
    a = ApiKey(id="key_a", tenant="ta", name="a", created_at=1.0)
    b = ApiKey(id="key_b", tenant="tb", name="b", created_at=2.0, admin=True)
    await store.put_key("hash-a", a)
    await store.put_key("hash-b", b)
    assert await store.get_key("hash-a") == a and await store.get_key("nope") is None
    assert [k.id for k in await store.list_keys()] == ["key_a", "key_b"]
    assert [k.id for k in await store.list_keys("tb")] == ["key_b"]
    assert await store.revoke_key("key_a") and not await store.revoke_key("key_zz")
    got = await store.get_key("hash-a")
    assert got is not None and got.revoked
