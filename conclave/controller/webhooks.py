"""Webhooks: the tenant's subscriptions and signing secret, the destination rules, the deliveries.

What the routes (``api/webhooks.py``) and ``RunService.submit`` call. A destination must pass
``fetch_url``'s rules (``tools/fetch.py``: the host lists, and no address that is not globally
reachable unless the deployment allows it) when it is submitted — its name is resolved then, and a
refused one is a 422 naming the field — and again on every delivery attempt, where the dispatcher's
connections go through fetch's ``CheckedBackend`` (the address connected to is the one checked, so a
name that rebinds to a private address after submission is refused too; ``dispatch.py``). The signing secret (``whsec_…``, Standard Webhooks)
is made with the tenant's first subscription, or on request, and is shown once.
"""

from __future__ import annotations

import base64
import secrets
import time
from datetime import UTC, datetime

import httpcore

from conclave.config import Settings, WebhookSettings
from conclave.core.store import RunStore
from conclave.schema import (
    DeliveryStatus,
    NewWebhookSecret,
    NewWebhookSubscription,
    RunWebhook,
    WebhookDelivery,
    WebhookSubscription,
    WebhookSubscriptionRequest,
)
from conclave.tools.base import ToolError
from conclave.tools.fetch import FetchTool, Resolver, system_resolver
from conclave.tools.settings import FetchSettings, ToolSettings

from .errors import Conflict, InvalidInput, NotFound

__all__ = ["WebhookService", "check_destination", "destination_checker", "new_secret"]


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def destination_checker(
    cfg: WebhookSettings,
    *,
    resolver: Resolver = system_resolver,
    network: httpcore.AsyncNetworkBackend | None = None,
) -> FetchTool:
    """``fetch_url``'s checks, configured with the webhook rules (one set of rules for both): its
    ``check_destination`` before anything is queued, its ``transport`` for the deliveries.
    ``resolver`` and ``network`` are the system's unless a test brings its own."""
    fetch = FetchSettings(allow_hosts=cfg.allow_hosts, deny_hosts=cfg.deny_hosts, allow_private=cfg.allow_private)
    return FetchTool(ToolSettings(fetch=fetch), resolver=resolver, network=network)


async def check_destination(
    cfg: WebhookSettings, url: str, *, field: str, resolver: Resolver = system_resolver
) -> None:
    """``InvalidInput`` (a 422 naming ``field``) when this deployment may not deliver to ``url``: a
    scheme or host the rules refuse, a name that does not resolve, or an address that is not public."""
    try:
        await destination_checker(cfg, resolver=resolver).check_destination(url)
    except ToolError as e:
        raise InvalidInput(
            "webhook_destination_refused",
            f"{field}: {e}. Webhook destinations follow fetch_url's rules; an operator can allow a host "
            "with webhooks.allow_hosts",
            field=field,
            value=url[:200],
        ) from None


class WebhookService:
    """Subscriptions, the secret and the delivery log of a tenant."""

    def __init__(self, store: RunStore, settings: Settings) -> None:
        self.store = store
        self.cfg = settings.webhooks

    async def check_run_webhook(self, hook: RunWebhook, *, tenant: str) -> None:
        """What ``RunService.submit`` asks of ``TaskSpec.webhook``: an allowed destination, and a
        secret to sign with (without one, nobody could verify the deliveries)."""
        await check_destination(self.cfg, hook.url, field="webhook.url")
        if await self.store.webhook_secrets(tenant) is None:
            raise InvalidInput(
                "webhook_secret_missing",
                "webhook: this tenant has no webhook signing secret yet; create it first with "
                "POST /v1/webhooks/secret (conclave webhooks secret) and give it to the receiver",
                field="webhook",
            )

    async def subscribe(self, req: WebhookSubscriptionRequest, *, tenant: str) -> NewWebhookSubscription:
        await check_destination(self.cfg, req.url, field="url")
        existing = await self.store.list_subscriptions(tenant)
        if len(existing) >= self.cfg.max_subscriptions:
            raise Conflict(
                "too_many_subscriptions",
                f"tenant {tenant!r} has {len(existing)} webhook subscriptions, the most allowed "
                f"(webhooks.max_subscriptions); delete one first",
            )
        sub = WebhookSubscription(
            id="whs_" + secrets.token_hex(8),
            tenant=tenant,
            url=req.url,
            events=req.events,
            description=req.description,
            created_at=datetime.now(UTC),
        )
        secret = new_secret()
        created = await self.store.init_webhook_secret(tenant, secret)
        await self.store.put_subscription(sub)
        return NewWebhookSubscription(subscription=sub, secret=secret if created else None)

    async def subscriptions(self, *, tenant: str) -> list[WebhookSubscription]:
        return await self.store.list_subscriptions(tenant)

    async def get(self, sub_id: str, *, tenant: str) -> WebhookSubscription:
        sub = await self.store.get_subscription(tenant, sub_id)
        if sub is None:
            raise NotFound("subscription_not_found", f"no webhook subscription {sub_id!r}")
        return sub

    async def unsubscribe(self, sub_id: str, *, tenant: str) -> None:
        """Deliveries already on the outbox for it are dropped, not sent."""
        if not await self.store.delete_subscription(tenant, sub_id):
            raise NotFound("subscription_not_found", f"no webhook subscription {sub_id!r}")

    async def rotate_secret(self, *, tenant: str) -> NewWebhookSecret:
        """A new secret (the first one, or a replacement). The previous one keeps signing for
        ``webhooks.secret_grace_s`` so receivers can switch without rejecting a delivery."""
        secret = new_secret()
        if await self.store.init_webhook_secret(tenant, secret):
            return NewWebhookSecret(secret=secret)
        until = time.time() + self.cfg.secret_grace_s
        await self.store.rotate_webhook_secret(tenant, secret, previous_until=until)
        return NewWebhookSecret(secret=secret, previous_valid_until=datetime.fromtimestamp(until, UTC))

    async def deliveries(
        self, *, tenant: str, status: DeliveryStatus | None = None, limit: int = 50
    ) -> list[WebhookDelivery]:
        return await self.store.list_deliveries(tenant, status=status, limit=limit)
