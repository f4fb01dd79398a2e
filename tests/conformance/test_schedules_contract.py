"""The ``ScheduleStore`` contract (``conclave.core.store_schedules``), on every backend."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime

from conclave.core.store import RunStore
from conclave.core.store_schedules import StatusChange, TickOutcome
from conclave.schema import Schedule, ScheduleStatus, TaskSpec


def schedule(tenant: str = "t1", created: float = 1_000.0) -> Schedule:
    return Schedule(
        id=f"sch_{secrets.token_hex(4)}",
        tenant=tenant,
        cron="* * * * * *",
        timezone="UTC",
        task=TaskSpec(input="tick"),
        status=ScheduleStatus.ACTIVE,
        created_at=datetime.fromtimestamp(created, UTC),
    )


async def test_a_schedule_is_due_at_its_next_tick_and_only_for_its_tenant(store: RunStore) -> None:
    s = schedule()
    await store.put_schedule(s, next_due=1_001)
    assert await store.due_schedules(1_000.5) == []
    assert await store.due_schedules(1_001) == [s.id]
    got = await store.get_schedule(s.id, tenant="t1")
    assert got is not None and got.schedule.task.input == "tick" and got.cursor == 1_000.0 and got.pending is None
    assert got.schedule.next_tick_at == datetime.fromtimestamp(1_001, UTC)
    assert await store.get_schedule(s.id, tenant="t2") is None
    assert [x.schedule.id for x in await store.list_schedules("t1")] == [s.id] and await store.list_schedules(
        "t2"
    ) == []
    assert not await store.delete_schedule(s.id, tenant="t2")
    assert await store.delete_schedule(s.id, tenant="t1")
    assert await store.due_schedules(2_000) == [] and await store.get_schedule(s.id) is None


async def test_each_tick_is_claimed_by_exactly_one_of_many_racers(store: RunStore) -> None:
    s = schedule()
    await store.put_schedule(s, next_due=1_001)
    wins = 0
    for tick in range(1_001, 1_021):
        claims = await asyncio.gather(*(store.claim_tick(s.id, tick, now=tick, stale_s=30) for _ in range(8)))
        ok = [c for c in claims if c.outcome is TickOutcome.OK]
        assert len(ok) == 1 and ok[0].tick == tick
        assert {c.outcome for c in claims} - {TickOutcome.OK} <= {TickOutcome.BUSY}
        assert await store.record_tick(s.id, tick, f"run_{tick}", next_due=tick + 1)
        assert not await store.record_tick(s.id, tick, "run_again", next_due=tick + 1), "recorded once"
        assert (await store.claim_tick(s.id, tick, now=tick, stale_s=30)).outcome is TickOutcome.TAKEN
        wins += len(ok)
    st = await store.get_schedule(s.id)
    assert wins == 20 and st is not None and st.schedule.runs == 20 and st.schedule.last_run_id == "run_1020"
    assert await store.due_schedules(1_020.5) == [] and await store.due_schedules(1_021) == [s.id]


async def test_a_tick_whose_claimer_died_is_handed_to_the_next_caller_after_stale_s(store: RunStore) -> None:
    s = schedule()
    await store.put_schedule(s, next_due=1_001)
    assert (await store.claim_tick(s.id, 1_001, now=1_001, stale_s=30)).outcome is TickOutcome.OK
    assert (await store.claim_tick(s.id, 1_002, now=1_010, stale_s=30)).outcome is TickOutcome.BUSY
    retry = await store.claim_tick(s.id, 1_002, now=1_040, stale_s=30)
    assert retry.outcome is TickOutcome.RETRY and retry.tick == 1_001
    assert (await store.claim_tick(s.id, 1_002, now=1_041, stale_s=30)).outcome is TickOutcome.BUSY
    assert await store.record_tick(s.id, 1_001, "run_a", next_due=1_002, idempotency=("t1", "k"))
    assert (await store.claim_tick(s.id, 1_002, now=1_042, stale_s=30)).outcome is TickOutcome.OK


async def test_paused_schedules_are_not_due_and_resume_from_now(store: RunStore) -> None:
    s = schedule()
    await store.put_schedule(s, next_due=1_001)
    assert await store.set_schedule_status(
        s.id, tenant="t2", status=ScheduleStatus.PAUSED, now=1_000, next_due=None
    ) == (StatusChange.MISSING)
    ch = await store.set_schedule_status(s.id, tenant="t1", status=ScheduleStatus.PAUSED, now=1_000, next_due=None)
    assert ch is StatusChange.OK and await store.due_schedules(5_000) == []
    assert (await store.claim_tick(s.id, 1_001, now=1_001, stale_s=30)).outcome is TickOutcome.INACTIVE
    await store.set_schedule_status(s.id, tenant="t1", status=ScheduleStatus.ACTIVE, now=4_000, next_due=4_001)
    st = await store.get_schedule(s.id)
    assert st is not None and st.schedule.status is ScheduleStatus.ACTIVE and st.cursor == 4_000
    assert (await store.claim_tick(s.id, 3_999, now=4_000, stale_s=30)).outcome is TickOutcome.TAKEN
    assert await store.due_schedules(4_001) == [s.id]


async def test_skipping_moves_the_cursor_forward_only_and_no_next_tick_ends_the_schedule(store: RunStore) -> None:
    s = schedule()
    await store.put_schedule(s, next_due=1_001)
    assert await store.skip_ticks(s.id, upto=1_500, next_due=1_501)
    assert await store.skip_ticks(s.id, upto=1_200, next_due=1_501)
    st = await store.get_schedule(s.id)
    assert st is not None and st.cursor == 1_500
    assert (await store.claim_tick(s.id, 1_400, now=1_501, stale_s=30)).outcome is TickOutcome.TAKEN
    assert await store.skip_ticks(s.id, upto=None, next_due=None)
    st = await store.get_schedule(s.id)
    assert st is not None and st.schedule.status is ScheduleStatus.ENDED and await store.due_schedules(9e9) == []
    assert not await store.skip_ticks(s.id, upto=1_600, next_due=1_601), "an ended schedule stays ended"
