"""Schedules: a task template submitted as a run on every tick of a cron expression.

A tick is a time the cron expression names in the schedule's time zone (DST included: ``0 9 * * *``
in ``Europe/Berlin`` is 09:00 local time all year). Every tick makes exactly one run, however many
workers watch the schedule; the run carries ``metadata.schedule_id`` and ``metadata.schedule_tick``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import Field, field_validator, model_validator

from conclave.schema.base import StrictModel
from conclave.schema.runs import TaskSpec

__all__ = ["MissedTicks", "Schedule", "ScheduleList", "ScheduleRequest", "ScheduleStatus"]

MissedTicks = Literal["skip", "run_once"]
"""What to do with ticks that passed while no scheduler was running (or the service was down for
longer than the grace period): ``skip`` them, or ``run_once`` — one run for all of them together."""


class ScheduleStatus(StrEnum):
    """``active``: ticking. ``paused``: not ticking until resumed (ticks while paused never run).
    ``ended``: its end date passed; it never ticks again."""

    ACTIVE = "active"
    PAUSED = "paused"
    ENDED = "ended"


class ScheduleRequest(StrictModel):
    """What ``POST /v1/schedules`` takes."""

    cron: str = Field(
        min_length=1,
        max_length=200,
        description="A cron expression: 5 fields (minute hour day month weekday), or 6 with seconds last.",
    )
    timezone: str = Field(default="UTC", max_length=64, description="IANA time zone the expression is read in.")
    task: TaskSpec = Field(description="The run submitted on every tick.")
    name: str = Field(default="", max_length=200)
    end_at: datetime | None = Field(default=None, description="No tick after this instant (with a time zone).")
    missed: MissedTicks = Field(default="skip", description="Ticks missed while no scheduler ran: skip or run_once.")

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        v = " ".join(v.split())
        if len(v.split()) not in (5, 6) or not croniter.is_valid(v):
            raise ValueError(
                f"{v!r} is not a cron expression: expected 5 fields (minute hour day month weekday) "
                "or 6 (with seconds last), e.g. '*/15 * * * *'"
            )
        return v

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not an IANA time zone (e.g. 'UTC', 'Europe/Berlin')") from None
        return v

    @field_validator("end_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("end_at needs a time zone (e.g. 2030-01-01T00:00:00Z)")
        return v

    @model_validator(mode="after")
    def _no_idempotency_key(self) -> ScheduleRequest:
        if self.task.idempotency_key:
            raise ValueError("task.idempotency_key: a schedule makes its own (one per tick); leave it unset")
        if len(self.task.metadata) > 62:
            raise ValueError("task.metadata: at most 62 keys (a scheduled run adds schedule_id and schedule_tick)")
        return self


class Schedule(StrictModel):
    """A schedule and where it stands."""

    id: str
    tenant: str
    name: str = ""
    cron: str
    timezone: str
    task: TaskSpec
    end_at: datetime | None = None
    missed: MissedTicks = "skip"
    status: ScheduleStatus
    created_at: datetime
    next_tick_at: datetime | None = Field(default=None, description="The next tick it will run (null once ended).")
    last_tick_at: datetime | None = None
    last_run_id: str | None = None
    runs: int = Field(default=0, description="Runs it has submitted.")

    @classmethod
    def from_request(cls, req: ScheduleRequest, **standing: Any) -> Schedule:
        """The schedule ``req`` asks for, with where it stands (``id``, ``tenant``, ``status``,
        ``created_at``, ticks and runs): the one place the request's fields are copied."""
        fields = req.model_dump(include={"name", "cron", "timezone", "end_at", "missed"})
        return cls(task=req.task, **fields, **standing)


class ScheduleList(StrictModel):
    schedules: list[Schedule]
