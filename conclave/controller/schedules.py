"""Schedules: the service behind ``/v1/schedules``, and the scheduler loop every worker runs.

Who ticks: every worker's loop (``Scheduler.run``). There is no leader to elect or lose: for each due
schedule a worker works out the next tick to run and claims it in Redis (``claim_tick``, a Lua
script keyed by the schedule and the tick); exactly one claimer wins each tick, however many workers
and API replicas run. The winner submits the run through ``RunService.submit`` with the idempotency
key ``schedule:<id>:<tick>`` and records it (``record_tick``). A worker that dies between claim and
record leaves the tick pending; after ``schedules.stale_claim_s`` another worker finishes it, and the
idempotency key makes that the same run if the first worker had already submitted it.

Missed ticks — found later than ``schedules.grace_s`` after their time, because no worker ran — follow
the schedule's policy: ``skip`` (never run) or ``run_once`` (one run, for the latest of them).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from croniter import croniter

from conclave.config import Settings
from conclave.core import telemetry
from conclave.core.kinds import SpecError, validate_spec
from conclave.core.store import RunStore
from conclave.core.store_schedules import ScheduleState, StatusChange, TickOutcome
from conclave.schema import Schedule, ScheduleRequest, ScheduleStatus

from .errors import Conflict, InvalidInput, NotFound, ServiceError
from .outage import nap, riding_out
from .service import RunService
from .webhooks import WebhookService

__all__ = ["ScheduleService", "Scheduler", "next_tick"]

log = logging.getLogger(__name__)

#: Ticks worked out per pass at most (a long outage of a per-second schedule is walked in slices).
MAX_TICKS_PER_PASS = 1_000


def next_tick(cron: str, timezone: str, after: float, end_at: datetime | None = None) -> float | None:
    """The first tick strictly after ``after`` (unix s) in ``timezone``; None when it would be after
    ``end_at``."""
    start = datetime.fromtimestamp(after, ZoneInfo(timezone))
    nxt: datetime = croniter(cron, start).get_next(datetime)
    if end_at is not None and nxt > end_at:
        return None
    return nxt.timestamp()


def _next(s: Schedule, after: float) -> float | None:
    return next_tick(s.cron, s.timezone, after, s.end_at)


class ScheduleService:
    """What the routes do with a tenant's schedules."""

    def __init__(self, store: RunStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    async def create(self, req: ScheduleRequest, *, tenant: str) -> Schedule:
        try:
            validate_spec(req.task, self.settings.model_names())
        except SpecError as e:
            raise InvalidInput("invalid_task", f"task: {e}", field="task") from None
        if req.task.webhook is not None:
            await WebhookService(self.store, self.settings).check_run_webhook(req.task.webhook, tenant=tenant)
        if len(await self.store.list_schedules(tenant)) >= self.settings.schedules.max_per_tenant:
            raise Conflict(
                "too_many_schedules",
                f"tenant {tenant!r} has {self.settings.schedules.max_per_tenant} schedules, the most allowed "
                "(schedules.max_per_tenant); delete one first",
            )
        now = time.time()
        first = next_tick(req.cron, req.timezone, now, req.end_at)
        if first is None:
            raise InvalidInput(
                "schedule_never_ticks",
                f"end_at: {req.end_at.isoformat() if req.end_at else ''} leaves no tick of {req.cron!r} after now",
                field="end_at",
            )
        sched = Schedule.from_request(
            req,
            id="sch_" + secrets.token_hex(8),
            tenant=tenant,
            status=ScheduleStatus.ACTIVE,
            created_at=datetime.fromtimestamp(now, UTC),
        )
        await self.store.put_schedule(sched, next_due=first)
        return await self.get(sched.id, tenant=tenant)

    async def list(self, *, tenant: str) -> list[Schedule]:
        return [st.schedule for st in await self.store.list_schedules(tenant)]

    async def get(self, sid: str, *, tenant: str) -> Schedule:
        st = await self.store.get_schedule(sid, tenant=tenant)
        if st is None:
            raise NotFound("schedule_not_found", f"no schedule {sid!r}")
        return st.schedule

    async def delete(self, sid: str, *, tenant: str) -> None:
        if not await self.store.delete_schedule(sid, tenant=tenant):
            raise NotFound("schedule_not_found", f"no schedule {sid!r}")

    async def pause(self, sid: str, *, tenant: str) -> Schedule:
        return await self._set(sid, tenant, ScheduleStatus.PAUSED)

    async def resume(self, sid: str, *, tenant: str) -> Schedule:
        """Ticks from now on run; the ones that passed while it was paused never do."""
        return await self._set(sid, tenant, ScheduleStatus.ACTIVE)

    async def _set(self, sid: str, tenant: str, status: ScheduleStatus) -> Schedule:
        sched = await self.get(sid, tenant=tenant)
        now = time.time()
        nxt = _next(sched, now) if status is ScheduleStatus.ACTIVE else None
        change = await self.store.set_schedule_status(sid, tenant=tenant, status=status, now=now, next_due=nxt)
        if change is StatusChange.MISSING:
            raise NotFound("schedule_not_found", f"no schedule {sid!r}")
        if change is StatusChange.ENDED:
            raise Conflict("schedule_ended", f"schedule {sid} has ended (its end_at passed); it cannot change")
        return await self.get(sid, tenant=tenant)


class Scheduler:
    """Ticks due schedules until ``stop`` is set (one per worker; see the module docstring)."""

    def __init__(self, store: RunStore, settings: Settings, *, name: str) -> None:
        self.store = store
        self.settings = settings
        self.cfg = settings.schedules
        self.name = name
        self.runs = RunService(store, settings)

    async def run(self, stop: asyncio.Event) -> None:
        """A pass every ``schedules.poll_s`` until ``stop``. A Redis outage is ridden out with the
        worker's one backoff; any other failure of a pass is logged and the next pass runs (one bad
        schedule must not stop every other from ticking)."""
        while not stop.is_set():
            try:
                await riding_out(
                    "schedule pass",
                    lambda: self.tick_once(time.time()),
                    stop=stop,
                    who=f"scheduler {self.name}",
                    log=log,
                )
            except Exception:
                log.exception("scheduler %s: pass failed", self.name)
            await nap(stop, self.cfg.poll_s)

    async def tick_once(self, now: float) -> int:
        """One pass over the due schedules; returns the runs it submitted."""
        submitted = 0
        for sid in await self.store.due_schedules(now, limit=100):
            for _ in range(100):  # a schedule with several due ticks gets them one after another
                made = await self._advance(sid, now)
                if made is None:
                    break
                submitted += made
        return submitted

    async def _advance(self, sid: str, now: float) -> int | None:
        """Move one schedule one tick on: 1 (a run submitted), 0 (ticks skipped, more may follow), or
        None (nothing more to do now)."""
        st = await self.store.get_schedule(sid)
        if st is None:
            return None
        s = st.schedule
        if st.pending is not None:
            claim = await self.store.claim_tick(sid, st.pending, now=now, stale_s=self.cfg.stale_claim_s)
            if claim.outcome is TickOutcome.RETRY and claim.tick is not None:
                log.warning("schedule %s: tick %d was claimed and left unfinished; finishing it", sid, claim.tick)
                return await self._submit(st, claim.tick)
            return None
        if s.status is not ScheduleStatus.ACTIVE:
            return None
        ticks: list[float] = []
        cursor = st.cursor if st.cursor is not None else s.created_at.timestamp()
        upcoming = _next(s, cursor)
        while upcoming is not None and upcoming <= now and len(ticks) < MAX_TICKS_PER_PASS:
            ticks.append(upcoming)
            upcoming = _next(s, upcoming)
        if not ticks:
            await self.store.skip_ticks(sid, upto=None, next_due=upcoming)
            return None
        if len(ticks) == MAX_TICKS_PER_PASS and now - ticks[-1] > self.cfg.grace_s:
            await self.store.skip_ticks(sid, upto=int(ticks[-1]), next_due=upcoming)  # walk the outage in slices
            return 0
        late = [t for t in ticks if now - t > self.cfg.grace_s]
        on_time = [t for t in ticks if now - t <= self.cfg.grace_s]
        if late and s.missed == "run_once":
            target = late[-1]  # the claim moves the cursor over the earlier missed ticks
        elif late:
            await self.store.skip_ticks(sid, upto=int(late[-1]), next_due=on_time[0] if on_time else upcoming)
            if not on_time:
                return None
            target = on_time[0]
        else:
            target = on_time[0]
        claim = await self.store.claim_tick(sid, int(target), now=now, stale_s=self.cfg.stale_claim_s)
        if claim.outcome is TickOutcome.OK and claim.tick is not None:
            return await self._submit(st, claim.tick)
        if claim.outcome is TickOutcome.RETRY and claim.tick is not None:
            return await self._submit(st, claim.tick)
        return None

    async def _submit(self, st: ScheduleState, tick: int) -> int:
        s = st.schedule
        key = f"schedule:{s.id}:{tick}"
        when = datetime.fromtimestamp(tick, UTC).isoformat().replace("+00:00", "Z")
        spec = s.task.model_copy(
            update={"metadata": {**s.task.metadata, "schedule_id": s.id, "schedule_tick": when}, "idempotency_key": key}
        )
        nxt = _next(s, tick)
        try:
            run, created = await self.runs.submit(spec, tenant=s.tenant)
        except (ServiceError, SpecError, ValueError) as e:
            log.error("schedule %s: tick %s could not be submitted (%s); skipped", s.id, when, e)
            await self.store.record_tick(s.id, tick, "", next_due=nxt)
            return 0
        await self.store.record_tick(
            s.id, tick, run.id, next_due=nxt, idempotency=(s.tenant, key), idempotency_ttl_s=86_400
        )
        if created:
            telemetry.scheduled_run()
        return 1
