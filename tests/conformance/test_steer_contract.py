"""The ``SteerStore`` contract (``conclave.core.store_steer`` states it), on every backend: pause and resume,
calls that wait for approval, the step log and forks, threads and their multitask policies."""

from __future__ import annotations

import asyncio

import pytest

from conclave.core.ledger import RunLedger
from conclave.core.pending import PendingCommit
from conclave.core.store import ClaimOutcome, FinishFields, RunStore
from conclave.core.store_steer import (
    ApprovalRequest,
    DecideOutcome,
    ForkOutcome,
    MessageOutcome,
    PauseOutcome,
    ResumeOutcome,
    approval_id,
)
from conclave.core.workspace import WorkspaceOp, WorkspaceOpKind
from conclave.schema import ApprovalStatus, MultitaskPolicy, RunStatus, StopReason

from .conftest import spec, submit_and_claim, types


async def claim_next(store: RunStore, rid: str, owner: str, *, max_attempts: int = 3) -> tuple[str, int]:
    """Read the queue until ``rid``'s entry comes, claim it as ``owner``; returns (qid, attempt)."""
    for _ in range(20):
        for e in await store.read_new(f"c-{owner}", 100, 100):
            if e.rid == rid:
                res = await store.claim(rid, owner=owner, qid=e.qid, worker="w", max_attempts=max_attempts)
                assert res.outcome is ClaimOutcome.OK, res
                return e.qid, res.attempt
    raise AssertionError(f"no queue entry for {rid}")


async def entries_for(store: RunStore, rid: str) -> int:
    return sum(1 for e in await store.read_new("peek", 100, 50) if e.rid == rid)


def request(rid: str, key: str, tool: str = "write", **kw: object) -> ApprovalRequest:
    return ApprovalRequest(
        id=approval_id(rid, key),
        tool=tool,
        step_key=key,
        arguments={"path": "a.md", "big": 123456789012345678901},
        reserve={"tool:write": 1, "usd": 0},
        parameters={"type": "object", "properties": {"path": {"type": "string"}}},
        **kw,  # type: ignore[arg-type]
    )


def write(path: str, content: bytes) -> dict[str, WorkspaceOp]:
    return {path: WorkspaceOp(WorkspaceOpKind.WRITE, path, content)}


def delete(path: str) -> dict[str, WorkspaceOp]:
    return {path: WorkspaceOp(WorkspaceOpKind.DELETE, path)}


# -- pause and resume ---------------------------------------------------------------------------------


async def test_a_running_run_pauses_at_a_boundary_holding_nothing_and_resumes_on_a_new_entry(store: RunStore) -> None:
    rid, qid = await submit_and_claim(store)
    ledger = RunLedger(store, rid, "o1")
    await ledger.set_caps({"run|output_tokens": 100})
    await ledger.reserve("run", {"output_tokens": 60})
    res = await store.request_pause(rid, tenant="default")
    assert res.outcome is PauseOutcome.PAUSING
    assert (await store.request_pause(rid, tenant="default")).outcome is PauseOutcome.PAUSING
    run = await store.get(rid)
    assert run is not None and run.status is RunStatus.RUNNING and run.pause_requested == "user"
    commit = await store.commit(rid, "o1", PendingCommit(events=[("log", {})]), step_key="s/0", step_value="0")
    assert commit.pause_requested
    assert await store.pause(rid, "o1", reason="user", detail="asked", output="half an answer")
    assert await store.pause(rid, "o1", reason="user"), "a retried pause is answered"
    run = await store.get(rid)
    assert run is not None and run.status is RunStatus.PAUSED and run.pause_reason == "user"
    assert run.output == "half an answer" and run.pause_requested is None
    assert sum((await store.ledger_snapshot(rid)).reserved.values()) == 0
    assert (await store.queue_depth()).in_flight == 0
    assert (await types(store, rid))[-3:] == ["run.pause_requested", "log", "run.paused"]
    assert (await store.events(rid))[-1].data == {"reason": "user", "detail": "asked"}
    stale = await store.claim(rid, owner="o2", qid=qid, worker="w", max_attempts=3)
    assert stale.outcome is ClaimOutcome.STALE and stale.status is RunStatus.PAUSED
    assert [r for r in await store.paused_runs("default")] == [rid]
    assert await store.paused_runs("default", reason="tenant_budget") == []

    resumed = await store.resume(rid, tenant="default")
    assert resumed.outcome is ResumeOutcome.RESUMED
    run = await store.get(rid)
    assert run is not None and run.status is RunStatus.QUEUED and run.pause_reason is None
    assert (await store.events(rid))[-1].data == {"reason": "resume"}
    _, attempt = await claim_next(store, rid, "o3")
    assert attempt == 2
    assert not (await store.commit(rid, "o3", PendingCommit(events=[("log", {})]))).pause_requested
    assert (await store.resume(rid, tenant="default")).outcome is ResumeOutcome.NOT_PAUSED
    assert (await store.resume(rid, tenant="default")).status is RunStatus.RUNNING


async def test_a_queued_run_pauses_at_once_and_its_old_entry_is_stale(store: RunStore) -> None:
    run = (await store.submit(spec())).run
    assert (await store.request_pause(run.id, tenant="default")).outcome is PauseOutcome.PAUSED
    assert (await store.request_pause(run.id, tenant="default")).outcome is PauseOutcome.PAUSED
    got = await store.get(run.id)
    assert got is not None and got.status is RunStatus.PAUSED
    (entry,) = await store.read_new("c1", 10, 100)
    claim = await store.claim(run.id, owner="o1", qid=entry.qid, worker="w", max_attempts=3)
    assert claim.outcome is ClaimOutcome.STALE
    assert (await store.queue_depth()).in_flight == 0, "the stale entry is acknowledged"
    assert (await store.resume(run.id, tenant="default")).outcome is ResumeOutcome.RESUMED
    await claim_next(store, run.id, "o2")
    # the entry from before the pause can no longer take the run from its owner
    again = await store.claim(run.id, owner="o3", qid=entry.qid, worker="w", max_attempts=3)
    assert again.outcome is ClaimOutcome.STALE


async def test_pause_is_refused_when_waiting_ended_foreign_or_not_owned(store: RunStore) -> None:
    rid, _ = await submit_and_claim(store)
    assert (await store.request_pause(rid, tenant="other")).outcome is PauseOutcome.MISSING
    assert (await store.resume(rid, tenant="other")).outcome is ResumeOutcome.MISSING
    assert not await store.pause(rid, "not-the-owner", reason="user")
    assert await store.wait_for_approval(rid, "o1", [request(rid, "t/0")])
    assert (await store.request_pause(rid, tenant="default")).outcome is PauseOutcome.WAITING
    rid2, _ = await submit_and_claim(store)
    await store.finish(rid2, "o1", RunStatus.SUCCEEDED, FinishFields(stop_reason=StopReason.END_TURN))
    ended = await store.request_pause(rid2, tenant="default")
    assert ended.outcome is PauseOutcome.TERMINAL and ended.label == "succeeded"


async def test_clean_hand_overs_do_not_count_as_crashes(store: RunStore) -> None:
    rid, _ = await submit_and_claim(store)
    for i in range(3):
        owner = f"o{i + 2}"
        prev = "o1" if i == 0 else f"o{i + 1}"
        await store.request_pause(rid, tenant="default")
        assert await store.pause(rid, prev, reason="user")
        await store.resume(rid, tenant="default")
        await claim_next(store, rid, owner, max_attempts=1)
    run = await store.get(rid)
    assert run is not None and run.status is RunStatus.RUNNING and run.attempts == 4
    assert run.idle_seconds > 0, "time spent paused is counted apart from running"


# -- approvals --------------------------------------------------------------------------------------


async def test_waiting_holds_nothing_and_the_last_decision_requeues_the_run(store: RunStore) -> None:
    rid, qid = await submit_and_claim(store)
    ledger = RunLedger(store, rid, "o1")
    await ledger.set_caps({"run|output_tokens": 100})
    await ledger.reserve("run", {"output_tokens": 60})
    a, b = request(rid, "turn/0/tool/0"), request(rid, "turn/0/tool/1", tool="python")
    assert await store.wait_for_approval(rid, "o1", [a, b], output="so far")
    assert await store.wait_for_approval(rid, "o1", [a, b]), "a retried wait is answered"
    run = await store.get(rid)
    assert run is not None and run.status is RunStatus.WAITING and run.output == "so far"
    assert sum((await store.ledger_snapshot(rid)).reserved.values()) == 0
    assert (await store.queue_depth()).in_flight == 0
    assert (await types(store, rid))[-3:] == ["approval.requested", "approval.requested", "run.waiting"]
    got = await store.approvals(rid)
    assert [x.id for x in got] == [a.id, b.id] and {x.status for x in got} == {ApprovalStatus.PENDING}
    assert got[0].arguments["big"] == 123456789012345678901, "arguments reach the record exactly"
    assert got[0].reserve == {"tool:write": 1, "usd": 0} and got[0].parameters["type"] == "object"
    pending = await store.list_approvals("default", status=ApprovalStatus.PENDING)
    assert sorted(x.id for x in pending) == sorted([a.id, b.id])
    assert await store.list_approvals("other") == []
    assert (await store.claim(rid, owner="o2", qid=qid, worker="w", max_attempts=3)).outcome is ClaimOutcome.STALE

    first = await store.decide(rid, a.id, tenant="default", decision="approve", reason="fine")
    assert first.outcome is DecideOutcome.DECIDED and not first.resumed and first.status is RunStatus.WAITING
    assert first.approval is not None and first.approval.status is ApprovalStatus.APPROVED
    again = await store.decide(rid, a.id, tenant="default", decision="deny")
    assert again.outcome is DecideOutcome.ALREADY_DECIDED
    assert again.approval is not None and again.approval.status is ApprovalStatus.APPROVED
    last = await store.decide(rid, b.id, tenant="default", decision="deny", reason="not that")
    assert last.outcome is DecideOutcome.DECIDED and last.resumed and last.status is RunStatus.QUEUED
    assert [x.status for x in await store.approvals(rid)] == [ApprovalStatus.APPROVED, ApprovalStatus.DENIED]
    assert (await store.approvals(rid))[1].reason == "not that"
    assert await store.list_approvals("default", status=ApprovalStatus.PENDING) == []
    assert len(await store.list_approvals("default")) == 2
    evs = await store.events(rid)
    assert [e.type for e in evs[-3:]] == ["approval.resolved", "approval.resolved", "run.resumed"]
    assert evs[-2].data["status"] == "denied" and evs[-1].data == {"reason": "approval"}
    await claim_next(store, rid, "o3")


async def test_concurrent_decisions_on_one_call_one_wins(store: RunStore) -> None:
    rid, _ = await submit_and_claim(store)
    a = request(rid, "turn/0/tool/0")
    await store.wait_for_approval(rid, "o1", [a])
    results = await asyncio.gather(
        *(store.decide(rid, a.id, tenant="default", decision=d) for d in ("approve", "deny", "approve", "deny"))
    )
    outcomes = sorted(r.outcome.value for r in results)
    assert outcomes == ["already_decided"] * 3 + ["decided"]
    assert [e.type for e in await store.events(rid)].count("approval.resolved") == 1
    assert (await types(store, rid)).count("run.resumed") == 1


async def test_decisions_for_runs_not_waiting_or_of_another_tenant(store: RunStore) -> None:
    rid, _ = await submit_and_claim(store)
    running = await store.decide(rid, "apr_nope", tenant="default", decision="approve")
    assert running.outcome is DecideOutcome.NOT_WAITING and running.status is RunStatus.RUNNING
    a = request(rid, "t/0")
    await store.wait_for_approval(rid, "o1", [a])
    assert (await store.decide(rid, a.id, tenant="other", decision="approve")).outcome is DecideOutcome.MISSING
    assert (await store.decide(rid, "apr_nope", tenant="default", decision="approve")).outcome is DecideOutcome.MISSING
    edited = await store.decide(rid, a.id, tenant="default", decision="edit", arguments={"path": "b.md"})
    assert edited.approval is not None and edited.approval.status is ApprovalStatus.EDITED
    assert edited.approval.edited_arguments == {"path": "b.md"}
    await claim_next(store, rid, "o2")
    late = await store.decide(rid, a.id, tenant="default", decision="approve")
    assert late.outcome is DecideOutcome.ALREADY_DECIDED


async def test_an_answer_to_a_question_is_recorded(store: RunStore) -> None:
    rid, _ = await submit_and_claim(store)
    q = ApprovalRequest(
        id=approval_id(rid, "q"), tool="ask_human", kind="question", step_key="q", arguments={"question": "which year?"}
    )
    await store.wait_for_approval(rid, "o1", [q])
    res = await store.decide(rid, q.id, tenant="default", decision="approve", answer="1999")
    assert res.approval is not None and res.approval.answer == "1999" and res.approval.kind == "question"


async def test_a_wait_by_an_owner_that_lost_the_run_is_refused(store: RunStore) -> None:
    rid, qid = await submit_and_claim(store)
    await store.claim(rid, owner="o2", qid=qid, worker="w2", max_attempts=3)
    assert not await store.wait_for_approval(rid, "o1", [request(rid, "t/0")])
    assert await store.approvals(rid) == []


async def test_a_timeout_with_deny_expires_the_call_and_the_run_continues(store: RunStore) -> None:
    rid, _ = await submit_and_claim(store)
    a = request(rid, "t/0", timeout_s=0.05)
    await store.wait_for_approval(rid, "o1", [a])
    await asyncio.sleep(0.2)
    await store.expire_approvals()
    (got,) = await store.approvals(rid)
    assert got.status is ApprovalStatus.EXPIRED and got.reason and "0.05" in got.reason
    run = await store.get(rid)
    assert run is not None and run.status is RunStatus.QUEUED
    assert (await store.events(rid))[-1].data == {"reason": "approval_timeout"}
    late = await store.decide(rid, a.id, tenant="default", decision="approve")
    assert late.outcome is DecideOutcome.ALREADY_DECIDED
    await claim_next(store, rid, "o2")


async def test_a_timeout_with_fail_ends_the_run_and_expires_the_rest(store: RunStore) -> None:
    rid, _ = await submit_and_claim(store)
    a, b = request(rid, "t/0", timeout_s=0.05, on_timeout="fail"), request(rid, "t/1")
    await store.wait_for_approval(rid, "o1", [a, b])
    await asyncio.sleep(0.2)
    assert await store.expire_approvals() == 1
    run = await store.get(rid)
    assert run is not None and run.status is RunStatus.FAILED and run.stop_reason is StopReason.APPROVAL_TIMEOUT
    assert run.error and "write" in run.error
    assert [x.status for x in await store.approvals(rid)] == [ApprovalStatus.EXPIRED] * 2
    assert (await types(store, rid))[-1] == "run.finished"


async def test_cancelling_a_waiting_run_ends_it_at_once_and_expires_its_calls(store: RunStore) -> None:
    rid, _ = await submit_and_claim(store)
    await store.wait_for_approval(rid, "o1", [request(rid, "t/0")])
    assert (await store.cancel(rid, tenant="default")).label == "cancelled"
    run = await store.get(rid)
    assert run is not None and run.status is RunStatus.CANCELLED
    assert [x.status for x in await store.approvals(rid)] == [ApprovalStatus.EXPIRED]
    assert (await types(store, rid))[-1] == "run.finished"
    paused, _ = await submit_and_claim(store)
    await store.request_pause(paused, tenant="default")
    await store.pause(paused, "o1", reason="user")
    assert (await store.cancel(paused, tenant="default")).label == "cancelled"


# -- steps and forks --------------------------------------------------------------------------------


async def test_the_step_log_keeps_commit_order(store: RunStore) -> None:
    rid, _ = await submit_and_claim(store)
    for key in ("b", "a", "c"):
        await store.commit(rid, "o1", PendingCommit(events=[("log", {"k": key})]), step_key=key, step_value="1")
        await store.commit(rid, "o1", PendingCommit(events=[("log", {"loose": key})]))
    log = await store.step_log(rid)
    assert [(s.key, s.index) for s in log] == [("b", 0), ("a", 1), ("c", 2)]
    evs = {e.id: e for e in await store.events(rid)}
    assert [evs[s.event_id].data for s in log] == [{"k": "b"}, {"k": "a"}, {"k": "c"}]


async def _history(store: RunStore) -> tuple[str, list[int]]:
    """A run of three steps that write, overwrite and delete files, with loose changes between."""
    rid, _ = await submit_and_claim(store)
    await store.commit(
        rid,
        "o1",
        PendingCommit(events=[("log", {"i": 0})], workspace=write("f.txt", b"v0")),
        step_key="s/0",
        step_value="0",
    )
    await store.commit(rid, "o1", PendingCommit(workspace=write("loose.txt", b"between")))
    await store.commit(
        rid,
        "o1",
        PendingCommit(
            events=[("log", {"i": 1})], workspace={**write("f.txt", b"v1"), **write("g.bin", bytes(range(256)))}
        ),
        step_key="s/1",
        step_value="1",
    )
    await store.commit(rid, "o1", PendingCommit(events=[("log", {"loose": True})], workspace=delete("loose.txt")))
    await store.commit(
        rid,
        "o1",
        PendingCommit(
            events=[("log", {"i": 2})], workspace={**delete("g.bin"), **write("f.txt", b"v2"), **write("h", b"h")}
        ),
        step_key="s/2",
        step_value="2",
    )
    return rid, [e.id for e in await store.events(rid)]


async def test_a_fork_takes_over_the_steps_and_workspace_up_to_its_step(store: RunStore) -> None:
    src, src_events = await _history(store)
    before = (await store.load_steps(src), await store.load_workspace(src), await store.events(src))
    res = await store.fork(src, tenant="default", step_key="s/1", spec=spec("again"))
    assert res.outcome is ForkOutcome.FORKED and res.run is not None
    fork = res.run
    assert fork.status is RunStatus.QUEUED and fork.forked_from == src and fork.fork_step == "s/1"
    assert await store.load_steps(fork.id) == {"s/0": "0", "s/1": "1"}
    assert await store.load_workspace(fork.id) == {
        "f.txt": b"v1",
        "g.bin": bytes(range(256)),
        "loose.txt": b"between",
    }
    evs = await store.events(fork.id)
    assert [e.type for e in evs] == ["run.queued", "log", "log"]
    assert evs[0].data["forked_from"] == src
    assert [e.data["i"] for e in evs[1:]] == [0, 1]
    src_ids = [e.id for e in before[2] if e.type == "log" and "i" in e.data]
    assert [e.data["replayed"] for e in evs[1:]] == [{"run": src, "event": i} for i in src_ids[:2]]
    assert [(s.key, s.event_id) for s in await store.step_log(fork.id)] == [("s/0", 2), ("s/1", 3)]
    assert (await store.load_steps(src), await store.load_workspace(src), await store.events(src)) == before
    assert [e.id for e in await store.events(src)] == src_events, "the source is untouched"
    await claim_next(store, fork.id, "f1")

    # a fork of the fork rebuilds from what it took over, and names where an event first happened
    again = await store.fork(fork.id, tenant="default", step_key="s/0", spec=spec("once more"))
    assert again.run is not None
    assert await store.load_workspace(again.run.id) == {"f.txt": b"v0"}
    (first,) = [e for e in await store.events(again.run.id) if e.type == "log"]
    assert first.data["replayed"] == {"run": src, "event": src_ids[0]}


async def test_a_fork_needs_a_committed_step_of_the_tenants_run(store: RunStore) -> None:
    src, _ = await _history(store)
    assert (await store.fork(src, tenant="default", step_key="s/9", spec=spec())).outcome is ForkOutcome.NO_STEP
    assert (await store.fork(src, tenant="other", step_key="s/0", spec=spec())).outcome is ForkOutcome.MISSING


# -- threads --------------------------------------------------------------------------------------


def on(thread: str, text: str = "hi", **kw: object) -> object:
    return spec(text, thread_id=thread, **kw)


async def test_threads_are_created_once_per_tenant_and_listed_newest_first(store: RunStore) -> None:
    made = await store.create_thread(
        "t1", thread_id="alpha", multitask=MultitaskPolicy.ENQUEUE, metadata={"topic": "x"}
    )
    assert made.created and made.thread.multitask is MultitaskPolicy.ENQUEUE and made.thread.metadata == {"topic": "x"}
    again = await store.create_thread("t1", thread_id="alpha")
    assert not again.created and again.thread.multitask is MultitaskPolicy.ENQUEUE
    assert await store.get_thread("alpha", tenant="t2") is None
    other = await store.create_thread("t2", thread_id="alpha")
    assert other.created, "another tenant's thread of the same id is another thread"
    for name in ("beta", "gamma"):
        await asyncio.sleep(0.002)
        await store.create_thread("t1", thread_id=name)
    first = await store.list_threads("t1", limit=2)
    assert [t.id for t in first.threads] == ["gamma", "beta"] and first.next_cursor
    rest = await store.list_threads("t1", limit=2, cursor=first.next_cursor)
    assert [t.id for t in rest.threads] == ["alpha"] and rest.next_cursor is None


async def test_a_message_on_a_new_thread_starts_a_run_and_reject_refuses_a_second(store: RunStore) -> None:
    first = await store.post_message(on("th"), tenant="default")  # type: ignore[arg-type]
    assert first.outcome is MessageOutcome.STARTED and first.run is not None
    assert first.thread.active_run == first.run.id and first.thread.multitask is MultitaskPolicy.REJECT
    assert [e.type for e in await store.events(first.run.id)] == ["run.queued", "thread.message"]
    assert (await store.events(first.run.id))[1].data["position"] == 1
    second = await store.post_message(on("th", "again"), tenant="default")  # type: ignore[arg-type]
    assert second.outcome is MessageOutcome.REJECTED and second.run is None and second.active == first.run.id
    assert await store.thread_runs("th", tenant="default") == [first.run.id]
    same = await store.post_message(
        on("th", idempotency_key="k"),
        tenant="default",  # type: ignore[arg-type]
        multitask=MultitaskPolicy.ENQUEUE,
    )
    repeat = await store.post_message(on("th", idempotency_key="k"), tenant="default")  # type: ignore[arg-type]
    assert repeat.outcome is MessageOutcome.EXISTING and repeat.run is not None and same.run is not None
    assert repeat.run.id == same.run.id


async def test_a_message_repeating_a_plain_runs_idempotency_key_names_that_run_and_its_thread(
    store: RunStore,
) -> None:
    """The key was first used without a thread (schemathesis found this: the Redis store answered with no
    thread, a 500). The answer is the existing run; the thread named is there, as on every other outcome."""
    plain = (await store.submit(spec("plain", idempotency_key="k2"), tenant="default")).run  # type: ignore[arg-type]
    repeat = await store.post_message(on("fresh", idempotency_key="k2"), tenant="default")  # type: ignore[arg-type]
    assert repeat.outcome is MessageOutcome.EXISTING and repeat.run is not None and repeat.run.id == plain.id
    assert repeat.thread.id == "fresh" and repeat.thread.runs == 0 and repeat.thread.active_run is None
    assert await store.get_thread("fresh", tenant="default") == repeat.thread


async def test_enqueued_messages_start_one_at_a_time_in_order(store: RunStore) -> None:
    first = await store.post_message(on("q"), tenant="default")  # type: ignore[arg-type]
    assert first.run is not None
    qid, _ = await claim_next(store, first.run.id, "o1")
    later = []
    for i in range(3):
        res = await store.post_message(
            on("q", f"m{i}"),
            tenant="default",  # type: ignore[arg-type]
            multitask=MultitaskPolicy.ENQUEUE,
        )
        assert res.outcome is MessageOutcome.ENQUEUED and res.run is not None
        later.append(res.run.id)
    thread = await store.get_thread("q", tenant="default")
    assert thread is not None and thread.pending_runs == later and thread.active_run == first.run.id
    assert await entries_for(store, later[0]) == 0, "an enqueued run has no queue entry yet"
    owner, rid = "o1", first.run.id
    for nxt in later:
        await store.finish(rid, owner, RunStatus.SUCCEEDED, FinishFields(stop_reason=StopReason.END_TURN, output=rid))
        thread = await store.get_thread("q", tenant="default")
        assert thread is not None and thread.active_run == nxt
        owner, rid = f"o-{nxt}", nxt
        await claim_next(store, nxt, owner)
        history = [r.id for r in await store.thread_history(nxt)]
        assert history == [first.run.id, *later[: later.index(nxt)]]
    await store.finish(rid, owner, RunStatus.SUCCEEDED, FinishFields(stop_reason=StopReason.END_TURN))
    thread = await store.get_thread("q", tenant="default")
    assert thread is not None and thread.active_run is None and thread.runs == 4 and thread.last_run == later[-1]
    assert await store.thread_runs("q", tenant="default") == [first.run.id, *later]


async def test_interrupt_pauses_the_running_run_at_its_boundary_and_the_new_one_continues(store: RunStore) -> None:
    first = await store.post_message(on("i"), tenant="default")  # type: ignore[arg-type]
    assert first.run is not None
    await claim_next(store, first.run.id, "o1")
    res = await store.post_message(
        on("i", "stop that"),
        tenant="default",  # type: ignore[arg-type]
        multitask=MultitaskPolicy.INTERRUPT,
    )
    assert res.outcome is MessageOutcome.INTERRUPTING and res.run is not None and res.active == first.run.id
    running = await store.get(first.run.id)
    assert running is not None and running.pause_requested == "interrupt"
    assert await entries_for(store, res.run.id) == 0, "the new run waits for the interrupted one to stop"
    c = await store.commit(first.run.id, "o1", PendingCommit(), step_key="s", step_value="1")
    assert c.pause_requested
    assert await store.pause(first.run.id, "o1", reason="interrupt", output="partial")
    thread = await store.get_thread("i", tenant="default")
    assert thread is not None and thread.active_run == res.run.id
    await claim_next(store, res.run.id, "o2")
    assert [r.id for r in await store.thread_history(res.run.id)] == [first.run.id]
    assert (await store.resume(first.run.id, tenant="default")).outcome is ResumeOutcome.SUPERSEDED


async def test_interrupt_of_a_waiting_run_pauses_it_at_once(store: RunStore) -> None:
    first = await store.post_message(on("w"), tenant="default")  # type: ignore[arg-type]
    assert first.run is not None
    await claim_next(store, first.run.id, "o1")
    await store.wait_for_approval(first.run.id, "o1", [request(first.run.id, "t/0")])
    res = await store.post_message(
        on("w", "never mind"),
        tenant="default",  # type: ignore[arg-type]
        multitask=MultitaskPolicy.INTERRUPT,
    )
    assert res.run is not None
    old = await store.get(first.run.id)
    assert old is not None and old.status is RunStatus.PAUSED and old.pause_reason == "interrupt"
    assert [a.status for a in await store.approvals(first.run.id)] == [ApprovalStatus.EXPIRED]
    await claim_next(store, res.run.id, "o2")


async def test_rollback_cancels_the_active_run_and_drops_it_from_the_conversation(store: RunStore) -> None:
    base = await store.post_message(on("r", "one"), tenant="default")  # type: ignore[arg-type]
    assert base.run is not None
    await claim_next(store, base.run.id, "o0")
    await store.finish(base.run.id, "o0", RunStatus.SUCCEEDED, FinishFields(stop_reason=StopReason.END_TURN))
    first = await store.post_message(on("r", "two"), tenant="default")  # type: ignore[arg-type]
    assert first.run is not None
    await claim_next(store, first.run.id, "o1")
    res = await store.post_message(
        on("r", "three"),
        tenant="default",  # type: ignore[arg-type]
        multitask=MultitaskPolicy.ROLLBACK,
    )
    assert res.outcome is MessageOutcome.ROLLING_BACK and res.run is not None
    told = await store.commit(first.run.id, "o1", PendingCommit())
    assert told.cancel_requested
    await store.finish(first.run.id, "o1", RunStatus.CANCELLED, FinishFields(stop_reason=StopReason.CANCELLED))
    await claim_next(store, res.run.id, "o2")
    assert [r.id for r in await store.thread_history(res.run.id)] == [base.run.id]
    # rolling back a run that is not running cancels it at once
    queued = await store.post_message(
        on("r", "four"),
        tenant="default",  # type: ignore[arg-type]
        multitask=MultitaskPolicy.ENQUEUE,
    )
    assert queued.run is not None
    await store.finish(res.run.id, "o2", RunStatus.SUCCEEDED, FinishFields(stop_reason=StopReason.END_TURN))
    last = await store.post_message(
        on("r", "five"),
        tenant="default",  # type: ignore[arg-type]
        multitask=MultitaskPolicy.ROLLBACK,
    )
    assert last.run is not None and last.active == queued.run.id
    gone = await store.get(queued.run.id)
    assert gone is not None and gone.status is RunStatus.CANCELLED and "rolled back" in (gone.stop_detail or "")
    await claim_next(store, last.run.id, "o3")
    assert [r.id for r in await store.thread_history(last.run.id)] == [base.run.id, res.run.id]


async def test_cancelling_an_enqueued_run_takes_it_out_of_the_line(store: RunStore) -> None:
    first = await store.post_message(on("c"), tenant="default")  # type: ignore[arg-type]
    waiting = await store.post_message(
        on("c", "x"),
        tenant="default",  # type: ignore[arg-type]
        multitask=MultitaskPolicy.ENQUEUE,
    )
    after = await store.post_message(
        on("c", "y"),
        tenant="default",  # type: ignore[arg-type]
        multitask=MultitaskPolicy.ENQUEUE,
    )
    assert first.run and waiting.run and after.run
    assert (await store.cancel(waiting.run.id, tenant="default")).label == "cancelled"
    await claim_next(store, first.run.id, "o1")
    await store.finish(first.run.id, "o1", RunStatus.SUCCEEDED, FinishFields(stop_reason=StopReason.END_TURN))
    thread = await store.get_thread("c", tenant="default")
    assert thread is not None and thread.active_run == after.run.id and thread.pending_runs == []


@pytest.mark.parametrize("policy", [MultitaskPolicy.ENQUEUE, MultitaskPolicy.INTERRUPT])
async def test_a_resumed_thread_run_waits_behind_the_active_one(store: RunStore, policy: MultitaskPolicy) -> None:
    """A run paused by a person still holds its thread; a run resumed while another is active waits."""
    first = await store.post_message(on(f"p{policy}"), tenant="default")  # type: ignore[arg-type]
    assert first.run is not None
    assert (await store.request_pause(first.run.id, tenant="default")).outcome is PauseOutcome.PAUSED
    second = await store.post_message(on(f"p{policy}", "b"), tenant="default", multitask=policy)  # type: ignore[arg-type]
    assert second.run is not None
    if policy is MultitaskPolicy.ENQUEUE:
        assert second.outcome is MessageOutcome.ENQUEUED
        assert (await store.resume(first.run.id, tenant="default")).outcome is ResumeOutcome.RESUMED
    else:
        assert (await store.resume(first.run.id, tenant="default")).outcome is ResumeOutcome.SUPERSEDED
        await claim_next(store, second.run.id, "o2")


# -- retention --------------------------------------------------------------------------------------


async def test_purging_a_run_removes_its_steering_records(store: RunStore) -> None:
    rid, _ = await submit_and_claim(store)
    await store.commit(rid, "o1", PendingCommit(workspace=write("a", b"1")), step_key="s", step_value="1")
    await store.wait_for_approval(rid, "o1", [request(rid, "t/0")])
    await store.cancel(rid, tenant="default")
    assert await store.purge_finished("default", older_than_s=0) == 1
    assert await store.approvals(rid) == [] and await store.step_log(rid) == []
    assert await store.list_approvals("default") == []
    redis = getattr(store, "redis", None)
    if redis is not None:  # the Redis store: no key of the run is left, nor an index entry
        keys = store.keys  # type: ignore[attr-defined]
        assert [k async for k in redis.scan_iter(match=f"{keys.run(rid)}*")] == []
        assert await redis.zcard(keys.tenant_approvals("default")) == 0
