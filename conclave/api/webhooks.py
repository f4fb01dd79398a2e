"""HTTP wiring of webhooks: ``/v1/webhooks`` (subscriptions, the signing secret, the delivery log).
The logic is ``controller/webhooks.py``."""

from typing import Annotated

from fastapi import APIRouter, Query, Response

from conclave.controller.webhooks import WebhookService
from conclave.schema import (
    DeliveryPage,
    DeliveryStatus,
    NewWebhookSecret,
    NewWebhookSubscription,
    WebhookSubscription,
    WebhookSubscriptionRequest,
)

from .auth import CallerDep
from .deps import ERRORS, ServicesLike

__all__ = ["webhooks_router"]


def webhooks_router(services: ServicesLike) -> APIRouter:
    r = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=ERRORS)

    def svc() -> WebhookService:
        return WebhookService(services.service.store, services.settings)

    @r.post("", response_model=NewWebhookSubscription, status_code=201, summary="Subscribe to the tenant's runs")
    async def subscribe(body: WebhookSubscriptionRequest, caller: CallerDep) -> NewWebhookSubscription:
        """Every run of the tenant delivers ``events`` to ``url``. The tenant's first subscription
        creates its signing secret and shows it here, once."""
        return await svc().subscribe(body, tenant=caller.tenant)

    @r.get("", response_model=list[WebhookSubscription], summary="List the tenant's subscriptions")
    async def subscriptions(caller: CallerDep) -> list[WebhookSubscription]:
        return await svc().subscriptions(tenant=caller.tenant)

    @r.get("/deliveries", response_model=DeliveryPage, summary="Recent deliveries, newest first")
    async def deliveries(
        caller: CallerDep,
        status: DeliveryStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> DeliveryPage:
        """``status=dead`` lists the dead-lettered ones (every attempt failed for the whole retry window)."""
        return DeliveryPage(deliveries=await svc().deliveries(tenant=caller.tenant, status=status, limit=limit))

    @r.post("/secret", response_model=NewWebhookSecret, status_code=201, summary="Create or rotate the signing secret")
    async def rotate_secret(caller: CallerDep) -> NewWebhookSecret:
        """The new secret is shown once; after a rotation the previous one also signs for a grace period."""
        return await svc().rotate_secret(tenant=caller.tenant)

    @r.get("/{sub_id}", response_model=WebhookSubscription, summary="Get a subscription")
    async def get(sub_id: str, caller: CallerDep) -> WebhookSubscription:
        return await svc().get(sub_id, tenant=caller.tenant)

    @r.delete("/{sub_id}", status_code=204, response_class=Response, summary="Delete a subscription")
    async def delete(sub_id: str, caller: CallerDep) -> Response:
        """Deliveries still on their way to it are dropped."""
        await svc().unsubscribe(sub_id, tenant=caller.tenant)
        return Response(status_code=204)

    return r
