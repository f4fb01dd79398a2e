"""The shared vocabulary of Conclave.

Everything that crosses a process boundary (HTTP, the Redis queue, a Ray actor call) is one of these
pydantic models, so the SDK, the API, Redis and the workers speak one language. Models reject unknown
fields: a misspelt option is an error that names the field, never a silently ignored value.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "Budget",
    "BUDGET_LIMITS",
    "ChatMessageIn",
    "Cost",
    "CostLine",
    "Event",
    "EventType",
    "LimitStatus",
    "Run",
    "RunPage",
    "RunStatus",
    "StopReason",
    "StrictModel",
    "SubBudget",
    "TaskSpec",
    "TERMINAL_STATUSES",
    "Usage",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


class StrictModel(BaseModel):
    """Base for every boundary model: unknown fields are rejected by name."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RunStatus(StrEnum):
    """Where a run is in its lifecycle: queued → running → one of the four terminal states."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    BUDGET_EXHAUSTED = "budget_exhausted"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.BUDGET_EXHAUSTED})


class StopReason(StrEnum):
    """Why a run (or an agent inside it) stopped.

    ``end_turn``: the model answered. ``length``: the answer was cut at max_tokens. ``max_steps``: the
    step cap was reached. ``budget_exhausted``: a budget limit left no room (the run names the limit).
    ``cancelled``: a user asked. ``error``: the run body raised. ``stuck``: the agent repeated itself.
    ``crashed``: the run killed its worker too many times and was dead-lettered.
    """

    END_TURN = "end_turn"
    LENGTH = "length"
    MAX_STEPS = "max_steps"
    BUDGET_EXHAUSTED = "budget_exhausted"
    CANCELLED = "cancelled"
    ERROR = "error"
    STUCK = "stuck"
    CRASHED = "crashed"


# --------------------------------------------------------------------------------------------------
# Budgets, usage and cost
# --------------------------------------------------------------------------------------------------

#: The limits a budget may set. ``tool_calls`` is per tool (``tool_calls.<name>``, ``*`` for all).
BUDGET_LIMITS = (
    "usd",
    "input_tokens",
    "output_tokens",
    "model_calls",
    "tool_calls",
    "wall_seconds",
)

NonNegInt = Annotated[int, Field(ge=0)]


def _finite_non_negative(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


class _Limits(StrictModel):
    """The limits shared by a run budget and its scopes."""

    usd: float | None = Field(default=None, description="Cost cap in US dollars.")
    input_tokens: NonNegInt | None = None
    output_tokens: NonNegInt | None = None
    model_calls: NonNegInt | None = None
    tool_calls: dict[str, NonNegInt] | None = Field(
        default=None, description="Calls per tool name; '*' caps all tools together."
    )
    wall_seconds: float | None = Field(default=None, description="Wall-clock seconds of running.")
    scopes: dict[str, SubBudget] = Field(default_factory=dict, description="Stages or agents.")

    @field_validator("usd", "wall_seconds")
    @classmethod
    def _finite(cls, v: float | None, info: Any) -> float | None:
        return _finite_non_negative(info.field_name, v)

    @model_validator(mode="after")
    def _scopes_fit(self) -> Any:
        _check_children(self)
        return self

    def is_empty(self) -> bool:
        return all(getattr(self, k) is None for k in BUDGET_LIMITS) and not self.scopes


class SubBudget(_Limits):
    """A scope inside a budget (a stage or an agent): a share of the parent, or explicit limits.

    ``share`` is a fraction of every limit of the parent (0.7 = 70 %). Explicit limits may be given
    instead of, or beside, a share; they must not exceed the parent's.
    """

    share: float | None = Field(default=None, gt=0, le=1, description="Fraction of the parent budget.")


class Budget(_Limits):
    """Limits for a whole run; any combination, all optional.

    ``scopes`` splits the run into stages or agents (e.g. ``{"gather": {"share": 0.7}, "write":
    {"share": 0.3}}``); shares of siblings must not sum past 1.
    """

    currency: Literal["USD"] = Field(default="USD", description="Only USD is priced.")


def _check_children(parent: _Limits) -> None:
    shares = [s.share for s in parent.scopes.values() if s.share is not None]
    if sum(shares) > 1.0 + 1e-9:
        raise ValueError(f"scopes: shares sum to {sum(shares):.3f}, more than the whole parent budget (1.0)")
    for name, child in parent.scopes.items():
        for limit in ("usd", "input_tokens", "output_tokens", "model_calls", "wall_seconds"):
            mine, theirs = getattr(child, limit), getattr(parent, limit)
            if mine is not None and theirs is not None and mine > theirs:
                raise ValueError(f"scopes.{name}.{limit}: {mine} exceeds the parent's {limit} ({theirs})")
        if child.tool_calls and parent.tool_calls:
            for tool, n in child.tool_calls.items():
                cap = parent.tool_calls.get(tool)
                if cap is not None and n > cap:
                    raise ValueError(f"scopes.{name}.tool_calls.{tool}: {n} exceeds the parent's cap ({cap})")


class Usage(StrictModel):
    """Token and call counts, as the engines report them (never estimated from string lengths)."""

    input_tokens: NonNegInt = 0
    output_tokens: NonNegInt = 0
    cached_tokens: NonNegInt = 0
    model_calls: NonNegInt = 0
    tool_calls: dict[str, NonNegInt] = Field(default_factory=dict)

    def __add__(self, other: Usage) -> Usage:
        tools = dict(self.tool_calls)
        for k, v in other.tool_calls.items():
            tools[k] = tools.get(k, 0) + v
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            model_calls=self.model_calls + other.model_calls,
            tool_calls=tools,
        )


class CostLine(StrictModel):
    """Usage plus its price and time, for one slice of a run (a model, a tool, a stage, an agent)."""

    usage: Usage = Field(default_factory=Usage)
    usd: float = 0.0
    seconds: float = 0.0


class LimitStatus(StrictModel):
    """One budget limit in one scope: the cap, what is committed, what is reserved, what is left."""

    scope: str
    limit: str
    cap: float
    used: float
    reserved: float
    left: float
    exhausted: bool


class Cost(StrictModel):
    """A run's cost breakdown. ``usd`` is the unified cost: token cost plus priced tool calls."""

    total: CostLine = Field(default_factory=CostLine)
    by_model: dict[str, CostLine] = Field(default_factory=dict)
    by_tool: dict[str, CostLine] = Field(default_factory=dict)
    by_stage: dict[str, CostLine] = Field(default_factory=dict)
    by_agent: dict[str, CostLine] = Field(default_factory=dict)
    limits: list[LimitStatus] = Field(default_factory=list)
    exhausted_limit: str | None = None


# --------------------------------------------------------------------------------------------------
# Tasks and runs
# --------------------------------------------------------------------------------------------------


class ChatMessageIn(StrictModel):
    """A message given as a run's input (the OpenAI shape, text content only)."""

    role: Literal["system", "user", "assistant"]
    content: str


class TaskSpec(StrictModel):
    """What a user asks Conclave to do.

    ``kind`` picks the run body (``chat``, ``agent``, ``ensemble``, ``research``); ``options`` holds
    the kind's own settings and is validated by that kind when the run is submitted.
    """

    kind: str = Field(default="chat", min_length=1, max_length=64, description="Run kind.")
    input: str | list[ChatMessageIn] = Field(description="The task text, or chat messages.")
    system: str | None = Field(default=None, max_length=100_000, description="System prompt.")
    model: str | None = Field(
        default=None, max_length=256, description="Model name, or 'ensemble/<name>'; default model if unset."
    )
    ensemble: str | dict[str, Any] | None = Field(
        default=None, description="An ensemble by name, or an inline ensemble config."
    )
    tools: list[str] = Field(default_factory=list, max_length=64, description="Tool names or groups.")
    budget: Budget | None = None
    max_steps: int | None = Field(default=None, ge=1, le=10_000)
    options: dict[str, Any] = Field(default_factory=dict, description="Kind-specific options.")
    metadata: dict[str, str] = Field(default_factory=dict, description="Free labels, returned as is.")
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=256)

    @field_validator("input")
    @classmethod
    def _input_not_empty(cls, v: str | list[ChatMessageIn]) -> str | list[ChatMessageIn]:
        if isinstance(v, str):
            if not v.strip():
                raise ValueError("input must not be empty")
            if len(v) > 1_000_000:
                raise ValueError(f"input is {len(v)} characters, more than 1,000,000")
        elif not v:
            raise ValueError("input must hold at least one message")
        return v

    @field_validator("metadata")
    @classmethod
    def _metadata_small(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > 64:
            raise ValueError(f"metadata has {len(v)} keys, at most 64 are allowed")
        return v

    def input_text(self) -> str:
        """The input as one text (the last user message when messages were given)."""
        if isinstance(self.input, str):
            return self.input
        users = [m.content for m in self.input if m.role == "user"]
        return users[-1] if users else self.input[-1].content


class Run(StrictModel):
    """A submitted task and everything known about its execution."""

    id: str
    tenant: str = "default"
    spec: TaskSpec
    status: RunStatus
    stop_reason: StopReason | None = None
    stop_detail: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    output: str | None = Field(default=None, description="The run's final answer or report.")
    result: dict[str, Any] | None = Field(default=None, description="Structured result of the kind.")
    error: str | None = None
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    cost: Cost | None = Field(default=None, description="Breakdown by model, tool, stage and agent.")
    exhausted_limit: str | None = None
    last_event_id: int = 0
    cancel_requested: bool = False


class RunPage(StrictModel):
    """A page of runs, newest first; pass ``next_cursor`` back to get the following page."""

    runs: list[Run]
    next_cursor: str | None = None


EventType = Literal[
    "run.queued",
    "run.started",
    "run.resumed",
    "run.cancel_requested",
    "run.finished",
    "step.committed",
    "model.call",
    "tool.call",
    "tool.result",
    "agent.message",
    "agent.stopped",
    "stage.started",
    "stage.finished",
    "budget.update",
    "workspace.write",
    "ensemble.layer",
    "log",
]


class Event(StrictModel):
    """One entry of a run's event stream; ``id`` increases by one per event, from 1."""

    id: int
    run_id: str
    type: str
    ts: float = Field(description="Unix time in seconds.")
    data: dict[str, Any] = Field(default_factory=dict)
