"""HTTP wiring of ``/v1/schedules``; the logic is ``controller/schedules.py``."""

from fastapi import APIRouter, Response

from conclave.controller.schedules import ScheduleService
from conclave.schema import Schedule, ScheduleList, ScheduleRequest

from .auth import CallerDep
from .deps import ERRORS, ServicesLike

__all__ = ["schedules_router"]


def schedules_router(services: ServicesLike) -> APIRouter:
    r = APIRouter(prefix="/v1/schedules", tags=["schedules"], responses=ERRORS)

    def svc() -> ScheduleService:
        return ScheduleService(services.service.store, services.settings)

    @r.post("", response_model=Schedule, status_code=201, summary="Create a schedule")
    async def create(body: ScheduleRequest, caller: CallerDep) -> Schedule:
        """``task`` is submitted as a run on every tick of ``cron`` in ``timezone``; each run carries
        ``metadata.schedule_id``. The task is validated now, as a submission would be."""
        return await svc().create(body, tenant=caller.tenant)

    @r.get("", response_model=ScheduleList, summary="List the tenant's schedules")
    async def list_schedules(caller: CallerDep) -> ScheduleList:
        return ScheduleList(schedules=await svc().list(tenant=caller.tenant))

    @r.get("/{schedule_id}", response_model=Schedule, summary="Get a schedule")
    async def get(schedule_id: str, caller: CallerDep) -> Schedule:
        return await svc().get(schedule_id, tenant=caller.tenant)

    @r.post("/{schedule_id}/pause", response_model=Schedule, summary="Pause a schedule")
    async def pause(schedule_id: str, caller: CallerDep) -> Schedule:
        return await svc().pause(schedule_id, tenant=caller.tenant)

    @r.post("/{schedule_id}/resume", response_model=Schedule, summary="Resume a schedule")
    async def resume(schedule_id: str, caller: CallerDep) -> Schedule:
        """Ticks from now on run; those that passed while it was paused do not."""
        return await svc().resume(schedule_id, tenant=caller.tenant)

    @r.delete("/{schedule_id}", status_code=204, response_class=Response, summary="Delete a schedule")
    async def delete(schedule_id: str, caller: CallerDep) -> Response:
        await svc().delete(schedule_id, tenant=caller.tenant)
        return Response(status_code=204)

    return r
