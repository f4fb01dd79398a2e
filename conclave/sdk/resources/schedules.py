"""``client.schedules``: a task submitted as a run on every tick of a cron expression (``/v1/schedules``)."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

from conclave.schema import Schedule, ScheduleList, ScheduleRequest

from ..request import Call, model, no_content, path
from ..resource import Resource, TransportT, endpoint

__all__ = ["Schedules"]


def create_schedule(request: ScheduleRequest | Mapping[str, Any]) -> Call[Schedule]:
    """A schedule (``{"cron": "0 9 * * *", "timezone": "Europe/Berlin", "task": {...}}``); the request is
    validated here first, so a bad cron fails before anything is sent."""
    body = request if isinstance(request, ScheduleRequest) else ScheduleRequest.model_validate(dict(request))
    return Call("POST", "/v1/schedules", model(Schedule), json=body.model_dump(mode="json", exclude_none=True))


def list_schedules() -> Call[builtins.list[Schedule]]:
    """The tenant's schedules, each with where it stands (next tick, runs made)."""
    parse = model(ScheduleList)
    return Call("GET", "/v1/schedules", lambda r: parse(r).schedules)


def get_schedule(schedule_id: str) -> Call[Schedule]:
    """One of the tenant's schedules (``NotFound`` for another tenant's)."""
    return Call("GET", path("/v1/schedules/{}", schedule_id), model(Schedule))


def pause_schedule(schedule_id: str) -> Call[Schedule]:
    """No tick runs until it is resumed."""
    return Call("POST", path("/v1/schedules/{}/pause", schedule_id), model(Schedule))


def resume_schedule(schedule_id: str) -> Call[Schedule]:
    """Ticks from now on run; those that passed while it was paused do not."""
    return Call("POST", path("/v1/schedules/{}/resume", schedule_id), model(Schedule))


def delete_schedule(schedule_id: str) -> Call[None]:
    """Delete a schedule; the runs it made stay."""
    return Call("DELETE", path("/v1/schedules/{}", schedule_id), no_content)


class Schedules(Resource[TransportT]):
    """Cron schedules of runs."""

    create = endpoint(create_schedule)
    list = endpoint(list_schedules)
    get = endpoint(get_schedule)
    pause = endpoint(pause_schedule)
    resume = endpoint(resume_schedule)
    delete = endpoint(delete_schedule)
