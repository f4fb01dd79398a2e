"""The shared vocabulary of Conclave.

Everything that crosses a process boundary (HTTP, the store, a Ray actor call) is one of these pydantic
models, so the SDK, the API, the store and the workers speak one language. ``schema`` imports nothing
else of Conclave: every layer may stand on it.

- ``runs``: ``TaskSpec``, ``Run``, ``RunStatus``, ``StopReason``, ``Event`` and its ``EventType``s.
- ``budget``: ``Budget``, ``Usage``, ``Cost``, ``Price``.
- ``chat``: the OpenAI chat-completions models every engine speaks, and the errors of a model call.
- ``admin``: API keys.
- ``webhooks``: ``RunWebhook`` (``TaskSpec.webhook``), subscriptions, deliveries.
- ``schedules``: ``ScheduleRequest``, ``Schedule``.
- ``errors``: the one formatter of validation errors.
"""

from conclave.schema.admin import ApiKey, NewKey, NewKeyRequest
from conclave.schema.base import StrictModel, utcnow
from conclave.schema.budget import (
    BUDGET_LIMITS,
    Budget,
    Cost,
    CostLine,
    LimitName,
    LimitStatus,
    Price,
    SubBudget,
    Usage,
)
from conclave.schema.errors import FieldProblem, field_problems, format_problems, format_validation_error
from conclave.schema.runs import (
    EVENT_TYPES,
    TERMINAL_STATUSES,
    CancelResponse,
    ChatMessageIn,
    Event,
    EventType,
    Run,
    RunPage,
    RunStatus,
    StopReason,
    TaskSpec,
    WorkspaceFile,
    WorkspaceListing,
)
from conclave.schema.schedules import MissedTicks, Schedule, ScheduleList, ScheduleRequest, ScheduleStatus
from conclave.schema.tenants import (
    PERIODS,
    BudgetLimits,
    MySpend,
    Period,
    PurgeRequest,
    PurgeResult,
    RetentionInForce,
    RetentionPolicy,
    ScopeBudget,
    SpendLine,
    TenantSpend,
)
from conclave.schema.webhooks import (
    DEFAULT_WEBHOOK_EVENTS,
    WEBHOOK_EVENTS,
    DeliveryPage,
    DeliveryStatus,
    NewWebhookSecret,
    NewWebhookSubscription,
    RunWebhook,
    WebhookDelivery,
    WebhookEvent,
    WebhookPayload,
    WebhookSubscription,
    WebhookSubscriptionRequest,
)

__all__ = [
    "ApiKey",
    "Budget",
    "BUDGET_LIMITS",
    "BudgetLimits",
    "CancelResponse",
    "ChatMessageIn",
    "Cost",
    "CostLine",
    "DEFAULT_WEBHOOK_EVENTS",
    "DeliveryPage",
    "DeliveryStatus",
    "Event",
    "EVENT_TYPES",
    "EventType",
    "field_problems",
    "FieldProblem",
    "format_problems",
    "format_validation_error",
    "LimitName",
    "LimitStatus",
    "MissedTicks",
    "MySpend",
    "NewKey",
    "NewKeyRequest",
    "NewWebhookSecret",
    "NewWebhookSubscription",
    "Period",
    "PERIODS",
    "Price",
    "PurgeRequest",
    "PurgeResult",
    "RetentionInForce",
    "RetentionPolicy",
    "Run",
    "RunPage",
    "RunStatus",
    "RunWebhook",
    "Schedule",
    "ScheduleList",
    "ScheduleRequest",
    "ScheduleStatus",
    "ScopeBudget",
    "SpendLine",
    "StopReason",
    "StrictModel",
    "SubBudget",
    "TaskSpec",
    "TenantSpend",
    "TERMINAL_STATUSES",
    "Usage",
    "utcnow",
    "WEBHOOK_EVENTS",
    "WebhookDelivery",
    "WebhookEvent",
    "WebhookPayload",
    "WebhookSubscription",
    "WebhookSubscriptionRequest",
    "WorkspaceFile",
    "WorkspaceListing",
]
