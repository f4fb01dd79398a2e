"""The shared vocabulary of Conclave.

Everything that crosses a process boundary (HTTP, the store, a Ray actor call) is one of these pydantic
models, so the SDK, the API, the store and the workers speak one language. ``schema`` imports nothing
else of Conclave: every layer may stand on it.

- ``runs``: ``TaskSpec``, ``Run``, ``RunStatus``, ``StopReason``, ``Event`` and its ``EventType``s.
- ``budget``: ``Budget``, ``Usage``, ``Cost``, ``Price``.
- ``chat``: the OpenAI chat-completions models every engine speaks, and the errors of a model call.
- ``admin``: API keys.
- ``steer``: approvals, threads, forks and the answers of pause / resume.
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
    LIFECYCLE_EVENTS,
    TERMINAL_STATUSES,
    THREAD_ID_PATTERN,
    ApprovalMode,
    CancelResponse,
    ChatMessageIn,
    Event,
    EventType,
    OnApprovalTimeout,
    Run,
    RunPage,
    RunStatus,
    StopReason,
    TaskSpec,
    WorkspaceFile,
    WorkspaceListing,
)
from conclave.schema.steer import (
    Approval,
    ApprovalDecision,
    ApprovalDecisionResponse,
    ApprovalKind,
    ApprovalList,
    ApprovalStatus,
    Decision,
    ForkRequest,
    MultitaskPolicy,
    RunControlResponse,
    StepInfo,
    StepListing,
    Thread,
    ThreadCreate,
    ThreadMessage,
    ThreadMessageResponse,
    ThreadPage,
    ThreadRuns,
)
from conclave.schema.tenants import PERIODS, BudgetLimits, Period, ScopeBudget, SpendLine, TenantSpend

__all__ = [
    "ApiKey",
    "Approval",
    "ApprovalDecision",
    "ApprovalDecisionResponse",
    "ApprovalKind",
    "ApprovalList",
    "ApprovalMode",
    "ApprovalStatus",
    "BUDGET_LIMITS",
    "Budget",
    "BudgetLimits",
    "CancelResponse",
    "ChatMessageIn",
    "Cost",
    "CostLine",
    "Decision",
    "EVENT_TYPES",
    "Event",
    "EventType",
    "FieldProblem",
    "ForkRequest",
    "LIFECYCLE_EVENTS",
    "LimitName",
    "LimitStatus",
    "MultitaskPolicy",
    "NewKey",
    "NewKeyRequest",
    "OnApprovalTimeout",
    "PERIODS",
    "Period",
    "Price",
    "Run",
    "RunControlResponse",
    "RunPage",
    "RunStatus",
    "ScopeBudget",
    "SpendLine",
    "StepInfo",
    "StepListing",
    "StopReason",
    "StrictModel",
    "SubBudget",
    "TERMINAL_STATUSES",
    "THREAD_ID_PATTERN",
    "TaskSpec",
    "TenantSpend",
    "Thread",
    "ThreadCreate",
    "ThreadMessage",
    "ThreadMessageResponse",
    "ThreadPage",
    "ThreadRuns",
    "Usage",
    "WorkspaceFile",
    "WorkspaceListing",
    "field_problems",
    "format_problems",
    "format_validation_error",
    "utcnow",
]
