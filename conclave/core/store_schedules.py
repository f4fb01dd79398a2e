"""The ``ScheduleStore`` contract: schedules, and the claim that makes each tick run exactly once.

What every backend promises (``tests/conformance/test_schedules_contract.py`` checks it):

- **Tenancy.** A schedule belongs to one tenant; reading, pausing or deleting another tenant's is
  "not found".
- **Due index.** ``due_schedules(now)`` names the active schedules whose next tick is at or before
  ``now``; paused, ended and deleted ones are never due.
- **One claimer per tick.** A schedule's *cursor* is the last tick claimed; it only moves forward.
  ``claim_tick(sid, t)`` succeeds (``ok``) for exactly one caller and only when ``t`` is after the
  cursor; the tick is then *pending* until ``record_tick`` stores its run. While a tick is pending
  other callers are told ``busy``; once it has been pending for ``stale_s`` (its claimer died between
  claim and submission), the next caller gets it back (``retry``) to finish — the run is submitted
  with an idempotency key made of the schedule id and the tick, so finishing twice makes one run.
- **Skipping.** ``skip_ticks`` moves the cursor forward without runs (missed ticks under ``skip``)
  and sets when the schedule is due next; ``next_due=None`` ends it.
- **Pause and resume.** Pausing takes the schedule off the due index; resuming moves its cursor to
  ``now`` (ticks while paused never run) and sets its next due time.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from conclave.schema import Schedule, ScheduleStatus

__all__ = ["ScheduleState", "ScheduleStore", "StatusChange", "TickClaim", "TickOutcome"]


@dataclass(frozen=True)
class ScheduleState:
    """A schedule as stored: the public record plus the claim state (unix seconds)."""

    schedule: Schedule
    cursor: float | None = None
    pending: int | None = None


class TickOutcome(StrEnum):
    OK = "ok"
    RETRY = "retry"
    BUSY = "busy"
    TAKEN = "taken"
    INACTIVE = "inactive"
    MISSING = "missing"


@dataclass(frozen=True)
class TickClaim:
    outcome: TickOutcome
    #: The tick the caller now owns (``ok``: the one it asked for; ``retry``: the stale pending one).
    tick: int | None = None


class StatusChange(StrEnum):
    OK = "ok"
    MISSING = "missing"
    ENDED = "ended"


@runtime_checkable
class ScheduleStore(Protocol):
    """See the module docstring. Times are unix seconds."""

    async def put_schedule(self, schedule: Schedule, *, next_due: float | None) -> None:
        """Create a schedule (``schedule.id`` is new); due at ``next_due`` (None: it never ticks)."""

    async def get_schedule(self, sid: str, *, tenant: str | None = None) -> ScheduleState | None: ...

    async def list_schedules(self, tenant: str) -> list[ScheduleState]:
        """Oldest first."""

    async def delete_schedule(self, sid: str, *, tenant: str) -> bool: ...

    async def set_schedule_status(
        self, sid: str, *, tenant: str, status: ScheduleStatus, now: float, next_due: float | None
    ) -> StatusChange:
        """``paused`` or ``active`` (resume: ``next_due`` is the first tick after ``now``)."""

    async def due_schedules(self, now: float, limit: int = 100) -> list[str]: ...

    async def claim_tick(self, sid: str, tick: int, *, now: float, stale_s: float) -> TickClaim: ...

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
        """Store the pending tick's run and the next due time; ``idempotency`` = (tenant, key) of the
        submission, whose key may now expire. False when ``tick`` is not pending."""

    async def skip_ticks(self, sid: str, *, upto: int | None, next_due: float | None) -> bool: ...
