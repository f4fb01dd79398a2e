"""The in-memory twin of the schedule store (a test double; a mixin of ``InMemoryRunStore``)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from conclave.schema import Schedule, ScheduleStatus

from .store_schedules import ScheduleState, StatusChange, TickClaim, TickOutcome

__all__ = ["MemorySchedulesMixin"]


@dataclass
class _Sched:
    state: ScheduleState
    next_due: float | None
    pending_at: float = 0.0


@dataclass
class _SchedState:
    by_id: dict[str, _Sched] = field(default_factory=dict)


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


class MemorySchedulesMixin:
    """Schedules for ``InMemoryRunStore``."""

    @property
    def _sc(self) -> _SchedState:
        state: _SchedState | None = self.__dict__.get("_sched_state")
        if state is None:
            state = self.__dict__["_sched_state"] = _SchedState()
        return state

    def _sched_set(self, s: _Sched, **changes: object) -> None:
        s.state = replace(s.state, schedule=s.state.schedule.model_copy(update=changes))

    async def put_schedule(self, schedule: Schedule, *, next_due: float | None) -> None:
        sched = schedule.model_copy(update={"next_tick_at": _dt(next_due)})
        state = ScheduleState(schedule=sched, cursor=schedule.created_at.timestamp())
        self._sc.by_id[schedule.id] = _Sched(state, next_due if schedule.status is ScheduleStatus.ACTIVE else None)

    async def get_schedule(self, sid: str, *, tenant: str | None = None) -> ScheduleState | None:
        s = self._sc.by_id.get(sid)
        if s is None or (tenant is not None and s.state.schedule.tenant != tenant):
            return None
        return s.state

    async def list_schedules(self, tenant: str) -> list[ScheduleState]:
        rows = [s.state for s in self._sc.by_id.values() if s.state.schedule.tenant == tenant]
        return sorted(rows, key=lambda st: (st.schedule.created_at, st.schedule.id))

    async def delete_schedule(self, sid: str, *, tenant: str) -> bool:
        s = self._sc.by_id.get(sid)
        if s is None or s.state.schedule.tenant != tenant:
            return False
        del self._sc.by_id[sid]
        return True

    async def set_schedule_status(
        self, sid: str, *, tenant: str, status: ScheduleStatus, now: float, next_due: float | None
    ) -> StatusChange:
        s = self._sc.by_id.get(sid)
        if s is None or s.state.schedule.tenant != tenant:
            return StatusChange.MISSING
        current = s.state.schedule.status
        if current is ScheduleStatus.ENDED:
            return StatusChange.ENDED
        if status is ScheduleStatus.PAUSED:
            s.next_due = None
            self._sched_set(s, status=ScheduleStatus.PAUSED, next_tick_at=None)
            return StatusChange.OK
        if current is ScheduleStatus.ACTIVE:
            return StatusChange.OK
        if s.state.cursor is None or now > s.state.cursor:
            s.state = replace(s.state, cursor=now)
        if next_due is None:
            self._sched_set(s, status=ScheduleStatus.ENDED, next_tick_at=None)
        else:
            s.next_due = next_due
            self._sched_set(s, status=ScheduleStatus.ACTIVE, next_tick_at=_dt(next_due))
        return StatusChange.OK

    async def due_schedules(self, now: float, limit: int = 100) -> list[str]:
        due = [
            (s.next_due, sid)
            for sid, s in self._sc.by_id.items()
            if s.next_due is not None and s.next_due <= now and s.state.schedule.status is ScheduleStatus.ACTIVE
        ]
        return [sid for _, sid in sorted(due)][:limit]

    async def claim_tick(self, sid: str, tick: int, *, now: float, stale_s: float) -> TickClaim:
        s = self._sc.by_id.get(sid)
        if s is None:
            return TickClaim(TickOutcome.MISSING)
        st = s.state
        if st.pending is not None:
            if now - s.pending_at < stale_s:
                return TickClaim(TickOutcome.BUSY)
            s.pending_at = now
            return TickClaim(TickOutcome.RETRY, st.pending)
        if st.schedule.status is not ScheduleStatus.ACTIVE:
            return TickClaim(TickOutcome.INACTIVE)
        if st.cursor is not None and tick <= st.cursor:
            return TickClaim(TickOutcome.TAKEN)
        s.state = replace(st, cursor=float(tick), pending=tick)
        s.pending_at = now
        return TickClaim(TickOutcome.OK, tick)

    async def record_tick(
        self,
        sid: str,
        tick: int,
        run_id: str,
        *,
        next_due: float | None,
        idempotency: tuple[str, str] | None = None,
        idempotency_ttl_s: float = 86400,
    ) -> bool:
        s = self._sc.by_id.get(sid)
        if s is None or s.state.pending != tick:
            return False
        s.state = replace(s.state, pending=None)
        sched = s.state.schedule
        changes: dict[str, object] = {"last_tick_at": _dt(tick), "last_run_id": run_id, "runs": sched.runs + 1}
        # ``idempotency``: the in-memory store's keys never expire, so there is nothing to shorten.
        if next_due is None:
            s.next_due = None
            changes.update(status=ScheduleStatus.ENDED, next_tick_at=None)
        elif sched.status is ScheduleStatus.ACTIVE:
            s.next_due = next_due
            changes["next_tick_at"] = _dt(next_due)
        self._sched_set(s, **changes)
        return True

    async def skip_ticks(self, sid: str, *, upto: int | None, next_due: float | None) -> bool:
        s = self._sc.by_id.get(sid)
        if s is None or s.state.schedule.status is not ScheduleStatus.ACTIVE:
            if s is not None:
                s.next_due = None
            return False
        if upto is not None and (s.state.cursor is None or upto > s.state.cursor):
            s.state = replace(s.state, cursor=float(upto))
        if next_due is None:
            s.next_due = None
            self._sched_set(s, status=ScheduleStatus.ENDED, next_tick_at=None)
        else:
            s.next_due = next_due
            self._sched_set(s, next_tick_at=_dt(next_due))
        return True
