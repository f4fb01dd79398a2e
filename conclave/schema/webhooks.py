"""Webhooks: where a run's lifecycle events are delivered, and what became of each delivery.

Two ways to ask for deliveries: a ``webhook`` on one ``TaskSpec`` (that run's events), and a tenant's
subscriptions (``/v1/webhooks``: every run of the tenant). Both are signed with the tenant's secret
(``whsec_…``) in the Standard Webhooks format. Only lifecycle events are deliverable — the per-step
events (``model.call``, ``tool.call``…) are for the event stream, not for a receiver's inbox.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal, get_args
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from conclave.schema.base import StrictModel

__all__ = [
    "DEFAULT_WEBHOOK_EVENTS",
    "WEBHOOK_EVENTS",
    "DeliveryPage",
    "DeliveryStatus",
    "NewWebhookSecret",
    "NewWebhookSubscription",
    "RunWebhook",
    "WebhookDelivery",
    "WebhookEvent",
    "WebhookPayload",
    "WebhookSubscription",
    "WebhookSubscriptionRequest",
]

WebhookEvent = Literal[
    "run.queued",
    "run.started",
    "run.resumed",
    "run.cancel_requested",
    "run.finished",
    "run.waiting",
    "run.paused",
    "approval.requested",
    "approval.resolved",
]
"""The events a webhook can carry: a run's lifecycle. ``run.waiting``, ``run.paused`` and
``approval.*`` are written by steerable runs (waiting for a person, paused by a budget or a user)."""

WEBHOOK_EVENTS: frozenset[str] = frozenset(get_args(WebhookEvent))
DEFAULT_WEBHOOK_EVENTS: tuple[WebhookEvent, ...] = ("run.finished",)


class _Destination(StrictModel):
    url: str = Field(min_length=1, max_length=2_000, description="http(s) URL that receives the deliveries.")
    events: list[WebhookEvent] = Field(
        default_factory=lambda: list(DEFAULT_WEBHOOK_EVENTS),
        min_length=1,
        max_length=len(WEBHOOK_EVENTS),
        description="Which lifecycle events to deliver (default: run.finished).",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        """Only the form is checked here; where the URL points (no private addresses unless the
        deployment allows them) is checked by the service when it is submitted."""
        v = v.strip()
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"a webhook URL must be http:// or https://, not {parts.scheme or 'no scheme'!r}")
        if not parts.hostname:
            raise ValueError(f"webhook URL {v!r} has no host")
        if parts.username or parts.password:
            raise ValueError("a webhook URL must not carry credentials; deliveries are signed instead")
        return v

    @field_validator("events")
    @classmethod
    def _events(cls, v: list[WebhookEvent]) -> list[WebhookEvent]:
        return list(dict.fromkeys(v))  # the order kept, repeats dropped


class RunWebhook(_Destination):
    """``TaskSpec.webhook``: deliver this run's ``events`` to ``url``, signed with the tenant's secret."""


class WebhookSubscriptionRequest(_Destination):
    """A tenant-wide subscription: every run of the tenant delivers ``events`` to ``url``."""

    description: str = Field(default="", max_length=500)


class WebhookSubscription(StrictModel):
    id: str
    tenant: str
    url: str
    events: list[WebhookEvent]
    description: str = ""
    created_at: datetime


class NewWebhookSubscription(StrictModel):
    """A created subscription. ``secret`` is the tenant's signing secret, shown here once when this
    subscription created it (the tenant's first); afterwards it is null — rotate it to see a new one."""

    subscription: WebhookSubscription
    secret: str | None = None


class NewWebhookSecret(StrictModel):
    """A new signing secret, shown once. Deliveries carry signatures with the previous secret as well
    until ``previous_valid_until``, so receivers can switch without losing a delivery."""

    secret: str
    previous_valid_until: datetime | None = None


class DeliveryStatus(StrEnum):
    """``pending``: not delivered yet (being tried, or waiting for its next try). ``delivered``: a 2xx
    answer. ``dead``: every try failed for longer than the retry window; it is never tried again.
    ``dropped``: its subscription was deleted before it could be delivered."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"
    DROPPED = "dropped"


class WebhookDelivery(StrictModel):
    """One event on its way to one destination. ``id`` (the ``webhook-id`` header) is the same on every
    attempt — ``<run id>.<event id>`` — so a receiver de-duplicates with it."""

    id: str
    destination: str = Field(description="'run' (the run's own webhook) or a subscription id.")
    tenant: str
    run_id: str
    event_id: int
    type: WebhookEvent
    url: str
    status: DeliveryStatus
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: datetime
    first_attempt_at: datetime | None = None
    last_attempt_at: datetime | None = None
    finished_at: datetime | None = None


class DeliveryPage(StrictModel):
    deliveries: list[WebhookDelivery]


class WebhookPayload(StrictModel):
    """The JSON body of a delivery (the Standard Webhooks shape: ``type``, ``timestamp``, ``data``)."""

    type: WebhookEvent
    timestamp: datetime
    data: dict[str, object]
