"""The shared vocabulary of Conclave.

Everything that crosses a process boundary (HTTP, the store, a Ray actor call) is one of these pydantic
models, so the SDK, the API, the store and the workers speak one language. ``schema`` imports nothing
else of Conclave: every layer may stand on it.

- ``runs``: ``TaskSpec``, ``Run``, ``RunStatus``, ``StopReason``, ``Event`` and its ``EventType``s.
- ``budget``: ``Budget``, ``Usage``, ``Cost``, ``Price``.
- ``chat``: the OpenAI chat-completions models every engine speaks, and the errors of a model call.
- ``admin``: API keys.
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

__all__ = [
    "ApiKey",
    "BUDGET_LIMITS",
    "Budget",
    "BudgetLimits",
    "CancelResponse",
    "ChatMessageIn",
    "Cost",
    "CostLine",
    "EVENT_TYPES",
    "Event",
    "EventType",
    "FieldProblem",
    "LimitName",
    "LimitStatus",
    "MySpend",
    "NewKey",
    "NewKeyRequest",
    "PERIODS",
    "Period",
    "Price",
    "PurgeRequest",
    "PurgeResult",
    "RetentionInForce",
    "RetentionPolicy",
    "Run",
    "RunPage",
    "RunStatus",
    "ScopeBudget",
    "SpendLine",
    "StopReason",
    "StrictModel",
    "SubBudget",
    "TERMINAL_STATUSES",
    "TaskSpec",
    "TenantSpend",
    "Usage",
    "WorkspaceFile",
    "WorkspaceListing",
    "field_problems",
    "format_problems",
    "format_validation_error",
    "utcnow",
]
