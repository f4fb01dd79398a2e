"""The ``OutboxStore`` contract: webhook subscriptions, signing secrets, and the durable outbox.

What every backend promises (the conformance suite, ``tests/conformance/test_outbox_contract.py``,
checks it on each):

- **Written with the event.** When a lifecycle event (``WEBHOOK_EVENTS``) is appended to a run's
  stream — by any operation of the run store — every destination that wants it gets an outbox entry
  and a ``pending`` delivery record *in the same atomic change*: the run's own ``TaskSpec.webhook`` and
  each subscription of the run's tenant at that moment. An event that happened is therefore never
  without its deliveries, and a delivery exists only for an event that happened.
- **Stable ids.** A delivery's ``mid`` (the ``webhook-id`` header) is ``<run id>.<event id>``: the same
  on every attempt and after any crash, so receivers de-duplicate with it. ``did`` =
  ``<mid>@<destination>`` names the delivery (destination ``run`` or a subscription id).
- **Claimed like the run queue.** Dispatchers read new entries (``outbox_read``), keep the ones they
  are working on (``outbox_renew``), and take over entries whose dispatcher stopped renewing
  (``outbox_reclaim``: idle longer than ``min_idle_ms``).
- **Ended once.** ``delivery_done`` records ``delivered``, ``dead`` or ``dropped`` and acknowledges the
  entry in one change; a delivery that ended is never ended again (the call returns False) and its
  entry is acknowledged all the same. Ended records expire after ``keep_s``.
- **Secrets.** A tenant has at most one current secret; ``init_webhook_secret`` sets it only when there
  is none; ``rotate_webhook_secret`` keeps the previous one valid until a given time.
- **Tenancy.** Subscriptions, deliveries and secrets are per tenant: reading another tenant's is
  "not found".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from conclave.schema import DeliveryStatus, WebhookDelivery, WebhookSubscription

__all__ = [
    "DeliveryAttempt",
    "DeliveryOutcome",
    "OutboxDepth",
    "OutboxEntry",
    "OutboxStore",
    "WebhookSecrets",
]


@dataclass(frozen=True)
class OutboxEntry:
    """One event on its way to one destination, as it sits on the outbox."""

    qid: str
    did: str
    mid: str
    destination: str
    url: str
    tenant: str
    run_id: str
    event_id: int
    type: str
    ts: float
    data: str  # the event's data, JSON text

    def event_data(self) -> dict[str, Any]:
        value = json.loads(self.data) if self.data else {}
        return value if isinstance(value, dict) else {"value": value}


@dataclass(frozen=True)
class OutboxDepth:
    #: Entries no dispatcher has read yet.
    waiting: int
    #: Entries read by a dispatcher and not yet acknowledged (being delivered, or between retries).
    in_flight: int


class DeliveryOutcome(StrEnum):
    """How a delivery ended (the terminal values of ``DeliveryStatus``)."""

    DELIVERED = "delivered"
    DEAD = "dead"
    DROPPED = "dropped"


@dataclass(frozen=True)
class DeliveryAttempt:
    """A delivery's tally after one more attempt was recorded."""

    attempts: int
    first_attempt_at: float


@dataclass(frozen=True)
class WebhookSecrets:
    """A tenant's signing secrets: ``current`` signs every delivery; ``previous`` also does until
    ``previous_until`` (so a receiver can switch secrets without rejecting a delivery)."""

    current: str
    previous: str | None = None
    previous_until: float | None = None

    def signing(self, now: float) -> list[str]:
        """The secrets a delivery made at ``now`` is signed with, current first."""
        keys = [self.current]
        if self.previous and self.previous_until is not None and now < self.previous_until:
            keys.append(self.previous)
        return keys


@runtime_checkable
class OutboxStore(Protocol):
    """See the module docstring."""

    # -- the outbox ------------------------------------------------------------------------------
    async def outbox_ready(self) -> None:
        """Create what dispatchers need before reading (idempotent)."""

    async def outbox_read(self, consumer: str, count: int, block_ms: int) -> list[OutboxEntry]: ...

    async def outbox_reclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[OutboxEntry]: ...

    async def outbox_renew(self, consumer: str, qids: Sequence[str]) -> None:
        """Reset the idle time of entries this dispatcher is still working on."""

    async def outbox_depth(self) -> OutboxDepth: ...

    async def delivery_attempted(
        self, did: str, *, now: float, status_code: int | None, error: str | None
    ) -> DeliveryAttempt:
        """Count one attempt (the first one also stamps ``first_attempt_at``, which the retry window
        is measured from, across dispatchers)."""

    async def delivery_done(
        self,
        did: str,
        qid: str,
        outcome: DeliveryOutcome,
        *,
        now: float,
        status_code: int | None = None,
        error: str | None = None,
        keep_s: float = 7 * 86400,
    ) -> bool:
        """End the delivery and acknowledge its entry; False when it had ended before."""

    async def get_delivery(self, did: str, *, tenant: str | None = None) -> WebhookDelivery | None: ...

    async def list_deliveries(
        self, tenant: str, *, status: DeliveryStatus | None = None, limit: int = 50
    ) -> list[WebhookDelivery]:
        """Newest first. With ``status=dead``: the dead-lettered ones, newest death first."""

    # -- subscriptions and secrets ---------------------------------------------------------------
    async def put_subscription(self, sub: WebhookSubscription) -> None: ...

    async def list_subscriptions(self, tenant: str) -> list[WebhookSubscription]:
        """Oldest first."""

    async def get_subscription(self, tenant: str, sub_id: str) -> WebhookSubscription | None: ...

    async def delete_subscription(self, tenant: str, sub_id: str) -> bool: ...

    async def webhook_secrets(self, tenant: str) -> WebhookSecrets | None: ...

    async def init_webhook_secret(self, tenant: str, secret: str) -> bool:
        """Set the tenant's first secret; False (nothing changed) when it has one."""

    async def rotate_webhook_secret(self, tenant: str, secret: str, *, previous_until: float) -> WebhookSecrets:
        """Make ``secret`` current; the old current one stays valid until ``previous_until``."""
