"""``client.webhooks``: the tenant's subscriptions, its signing secret and the delivery log (``/v1/webhooks``)."""

from __future__ import annotations

import builtins

from conclave.schema import (
    DeliveryPage,
    DeliveryStatus,
    NewWebhookSecret,
    NewWebhookSubscription,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
    WebhookSubscriptionRequest,
)

from ..request import Call, model, model_list, no_content, path
from ..resource import Resource, TransportT, endpoint

__all__ = ["Webhooks"]


def subscribe(
    url: str, *, events: builtins.list[WebhookEvent] | None = None, description: str = ""
) -> Call[NewWebhookSubscription]:
    """Deliver ``events`` (default ``run.finished``) of every run of the tenant to ``url``. ``secret`` in
    the answer is set, once, when this is the tenant's first subscription."""
    body = WebhookSubscriptionRequest.model_validate(
        {"url": url, "description": description, **({"events": events} if events is not None else {})}
    )
    return Call("POST", "/v1/webhooks", model(NewWebhookSubscription), json=body.model_dump(mode="json"))


def list_subscriptions() -> Call[builtins.list[WebhookSubscription]]:
    """The tenant's subscriptions, oldest first."""
    return Call("GET", "/v1/webhooks", model_list(WebhookSubscription))


def get_subscription(subscription_id: str) -> Call[WebhookSubscription]:
    """One of the tenant's subscriptions (``NotFound`` for another tenant's)."""
    return Call("GET", path("/v1/webhooks/{}", subscription_id), model(WebhookSubscription))


def delete_subscription(subscription_id: str) -> Call[None]:
    """Delete a subscription; deliveries still on their way to it are dropped."""
    return Call("DELETE", path("/v1/webhooks/{}", subscription_id), no_content)


def rotate_secret() -> Call[NewWebhookSecret]:
    """A new signing secret, shown once; the previous one also signs for the grace period."""
    return Call("POST", "/v1/webhooks/secret", model(NewWebhookSecret))


def _rows(page: DeliveryPage) -> builtins.list[WebhookDelivery]:
    return page.deliveries


def deliveries(*, status: DeliveryStatus | str | None = None, limit: int = 50) -> Call[builtins.list[WebhookDelivery]]:
    """Recent deliveries, newest first; ``status="dead"`` lists the dead-lettered ones."""
    parse = model(DeliveryPage)
    return Call(
        "GET",
        "/v1/webhooks/deliveries",
        lambda r: _rows(parse(r)),
        params={"status": str(status) if status else None, "limit": limit},
    )


class Webhooks(Resource[TransportT]):
    """Subscriptions, the signing secret, deliveries."""

    subscribe = endpoint(subscribe)
    list = endpoint(list_subscriptions)
    get = endpoint(get_subscription)
    delete = endpoint(delete_subscription)
    rotate_secret = endpoint(rotate_secret)
    deliveries = endpoint(deliveries)
