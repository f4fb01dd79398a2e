"""Sub-clients for runs that report back: ``client.webhooks`` and ``client.schedules`` (sync and async)."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

import httpx

from conclave.schema import (
    DeliveryStatus,
    NewWebhookSecret,
    NewWebhookSubscription,
    Schedule,
    ScheduleList,
    ScheduleRequest,
    WebhookDelivery,
    WebhookSubscription,
    WebhookSubscriptionRequest,
)

from .errors import error_for

__all__ = ["AsyncSchedules", "AsyncWebhooks", "Schedules", "Webhooks"]


def _ok(r: httpx.Response) -> Any:
    if r.is_success:
        return r.json() if r.content else None
    try:
        body = r.json()
    except ValueError:
        body = None
    raise error_for(r.status_code, body, f"HTTP {r.status_code}: {r.text[:200]}")


def _sub_body(url: str, events: builtins.list[str] | None, description: str) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url, "description": description}
    if events is not None:
        body["events"] = events
    return WebhookSubscriptionRequest.model_validate(body).model_dump(mode="json")


def _schedule_body(request: ScheduleRequest | Mapping[str, Any]) -> dict[str, Any]:
    model = request if isinstance(request, ScheduleRequest) else ScheduleRequest.model_validate(dict(request))
    return model.model_dump(mode="json", exclude_none=True)


def _params(status: DeliveryStatus | str | None, limit: int) -> dict[str, Any]:
    return {"limit": limit, **({"status": str(status)} if status else {})}


class Webhooks:
    """``/v1/webhooks``: the tenant's subscriptions, signing secret and delivery log."""

    def __init__(self, http: httpx.Client) -> None:
        self._h = http

    def subscribe(
        self, url: str, *, events: builtins.list[str] | None = None, description: str = ""
    ) -> NewWebhookSubscription:
        """``secret`` in the answer is set (once) when this is the tenant's first subscription."""
        return NewWebhookSubscription.model_validate(
            _ok(self._h.post("/v1/webhooks", json=_sub_body(url, events, description)))
        )

    def list(self) -> builtins.list[WebhookSubscription]:
        return [WebhookSubscription.model_validate(s) for s in _ok(self._h.get("/v1/webhooks"))]

    def delete(self, subscription_id: str) -> None:
        _ok(self._h.delete(f"/v1/webhooks/{subscription_id}"))

    def rotate_secret(self) -> NewWebhookSecret:
        return NewWebhookSecret.model_validate(_ok(self._h.post("/v1/webhooks/secret")))

    def deliveries(
        self, *, status: DeliveryStatus | str | None = None, limit: int = 50
    ) -> builtins.list[WebhookDelivery]:
        rows = _ok(self._h.get("/v1/webhooks/deliveries", params=_params(status, limit)))["deliveries"]
        return [WebhookDelivery.model_validate(d) for d in rows]


class AsyncWebhooks:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self._h = http

    async def subscribe(
        self, url: str, *, events: builtins.list[str] | None = None, description: str = ""
    ) -> NewWebhookSubscription:
        r = await self._h.post("/v1/webhooks", json=_sub_body(url, events, description))
        return NewWebhookSubscription.model_validate(_ok(r))

    async def list(self) -> builtins.list[WebhookSubscription]:
        return [WebhookSubscription.model_validate(s) for s in _ok(await self._h.get("/v1/webhooks"))]

    async def delete(self, subscription_id: str) -> None:
        _ok(await self._h.delete(f"/v1/webhooks/{subscription_id}"))

    async def rotate_secret(self) -> NewWebhookSecret:
        return NewWebhookSecret.model_validate(_ok(await self._h.post("/v1/webhooks/secret")))

    async def deliveries(
        self, *, status: DeliveryStatus | str | None = None, limit: int = 50
    ) -> builtins.list[WebhookDelivery]:
        rows = _ok(await self._h.get("/v1/webhooks/deliveries", params=_params(status, limit)))["deliveries"]
        return [WebhookDelivery.model_validate(d) for d in rows]


class Schedules:
    """``/v1/schedules``: a task submitted on every tick of a cron expression."""

    def __init__(self, http: httpx.Client) -> None:
        self._h = http

    def create(self, request: ScheduleRequest | Mapping[str, Any]) -> Schedule:
        return Schedule.model_validate(_ok(self._h.post("/v1/schedules", json=_schedule_body(request))))

    def list(self) -> builtins.list[Schedule]:
        return ScheduleList.model_validate(_ok(self._h.get("/v1/schedules"))).schedules

    def get(self, schedule_id: str) -> Schedule:
        return Schedule.model_validate(_ok(self._h.get(f"/v1/schedules/{schedule_id}")))

    def pause(self, schedule_id: str) -> Schedule:
        return Schedule.model_validate(_ok(self._h.post(f"/v1/schedules/{schedule_id}/pause")))

    def resume(self, schedule_id: str) -> Schedule:
        return Schedule.model_validate(_ok(self._h.post(f"/v1/schedules/{schedule_id}/resume")))

    def delete(self, schedule_id: str) -> None:
        _ok(self._h.delete(f"/v1/schedules/{schedule_id}"))


class AsyncSchedules:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self._h = http

    async def create(self, request: ScheduleRequest | Mapping[str, Any]) -> Schedule:
        return Schedule.model_validate(_ok(await self._h.post("/v1/schedules", json=_schedule_body(request))))

    async def list(self) -> builtins.list[Schedule]:
        return ScheduleList.model_validate(_ok(await self._h.get("/v1/schedules"))).schedules

    async def get(self, schedule_id: str) -> Schedule:
        return Schedule.model_validate(_ok(await self._h.get(f"/v1/schedules/{schedule_id}")))

    async def pause(self, schedule_id: str) -> Schedule:
        return Schedule.model_validate(_ok(await self._h.post(f"/v1/schedules/{schedule_id}/pause")))

    async def resume(self, schedule_id: str) -> Schedule:
        return Schedule.model_validate(_ok(await self._h.post(f"/v1/schedules/{schedule_id}/resume")))

    async def delete(self, schedule_id: str) -> None:
        _ok(await self._h.delete(f"/v1/schedules/{schedule_id}"))
