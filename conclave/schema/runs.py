"""Tasks, runs and their events: the records the SDK, the API, the store and the workers share.

Models reject unknown fields: a misspelt option is an error that names the field, never a silently
ignored value.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, get_args

from pydantic import Field, field_validator

from conclave.schema.base import StrictModel
from conclave.schema.budget import Budget, Cost, Usage
from conclave.schema.webhooks import RunWebhook

__all__ = [
    "ApprovalMode",
    "CancelResponse",
    "ChatMessageIn",
    "Event",
    "EventType",
    "EVENT_TYPES",
    "LIFECYCLE_EVENTS",
    "OnApprovalTimeout",
    "Run",
    "RunPage",
    "RunStatus",
    "StopReason",
    "TaskSpec",
    "TERMINAL_STATUSES",
    "THREAD_ID_PATTERN",
    "WorkspaceFile",
    "WorkspaceListing",
]


class RunStatus(StrEnum):
    """Where a run is in its lifecycle: queued → running → one of the four terminal states.

    Two more states are not terminal and hold **no lease and no worker**: ``waiting`` (a tool call
    waits for a person's approval, or ``ask_human`` for an answer) and ``paused`` (stopped at a step
    boundary on request, by a thread's ``interrupt``, or by a tenant budget). Approval or resume puts
    the run back on the queue and any worker continues it from its checkpoint.
    """

    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    PAUSED = "paused"
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
    ``crashed``: the run killed its worker too many times and was dead-lettered. ``approval_timeout``:
    a call waited for approval longer than the task allowed and the task's policy was ``fail``.
    """

    END_TURN = "end_turn"
    LENGTH = "length"
    MAX_STEPS = "max_steps"
    BUDGET_EXHAUSTED = "budget_exhausted"
    CANCELLED = "cancelled"
    ERROR = "error"
    STUCK = "stuck"
    CRASHED = "crashed"
    APPROVAL_TIMEOUT = "approval_timeout"


class ChatMessageIn(StrictModel):
    """A message given as a run's input (the OpenAI shape, text content only)."""

    role: Literal["system", "user", "assistant"]
    content: str


ApprovalMode = Literal["always", "never"]
"""Whether a tool's calls wait for a person: ``always`` (every call) or ``never`` (the default)."""

OnApprovalTimeout = Literal["deny", "fail"]
"""What a waiting call's timeout does: ``deny`` it (the model is told no one approved it in time) or
``fail`` the run."""

#: Thread ids: chosen by the user, so kept to characters safe in keys and URLs.
THREAD_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"


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
    webhook: RunWebhook | None = Field(default=None, description="Deliver this run's lifecycle events here.")
    thread_id: str | None = Field(
        default=None,
        pattern=THREAD_ID_PATTERN,
        description="Run as a message on this thread (created if the tenant has none of that id): the run sees "
        "the thread's earlier conversation and starts with a copy of its latest workspace.",
    )
    approval: dict[str, ApprovalMode] = Field(
        default_factory=dict,
        description="Per tool (a name, a group such as 'fs', or '*'): 'always' makes each call wait for a "
        "person's decision; unnamed tools never wait. ask_human always waits.",
    )
    approval_timeout_s: float | None = Field(
        default=None, gt=0, le=30 * 86400, description="How long a call may wait for a decision; no limit if unset."
    )
    approval_on_timeout: OnApprovalTimeout = Field(
        default="deny", description="When approval_timeout_s passes: 'deny' the call, or 'fail' the run."
    )

    @field_validator("approval")
    @classmethod
    def _approval_small(cls, v: dict[str, ApprovalMode]) -> dict[str, ApprovalMode]:
        if len(v) > 256:
            raise ValueError(f"approval names {len(v)} tools, at most 256 are allowed")
        return v

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
    pause_requested: str | None = Field(
        default=None, description="Why a pause was asked of this running run (it stops at its next step boundary)."
    )
    pause_reason: str | None = Field(default=None, description="Why the run is paused: user, interrupt, tenant_budget.")
    forked_from: str | None = Field(default=None, description="The run this one was forked from.")
    fork_step: str | None = Field(default=None, description="The step key of forked_from it continues after.")
    idle_seconds: float = Field(default=0.0, description="Time spent waiting or paused (not counted as running).")
    key_id: str | None = Field(
        default=None, description="The API key that submitted it (its budget binds the run too)."
    )


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
    "run.waiting",
    "run.pause_requested",
    "run.paused",
    "approval.requested",
    "approval.resolved",
    "thread.message",
    "model.call",
    "tool.call",
    "tool.result",
    "agent.message",
    "agent.stopped",
    "stage.started",
    "stage.finished",
    "ensemble.layer",
    "log",
]
"""Every event a run's stream can carry. ``run.*`` mark the lifecycle (written by the store's scripts);
``model.call`` / ``tool.call`` / ``tool.result`` / ``agent.*`` come from the agent loop; ``stage.*`` from
workflows with stages (research); ``ensemble.layer`` from the ensemble executor; ``log`` is free-form.
Steering: ``run.waiting`` (with ``approval.requested`` per call) when a run stops for a person,
``approval.resolved`` when one decides (or a timeout does), ``run.pause_requested`` / ``run.paused`` /
``run.resumed {reason: "resume"}`` around a pause, ``thread.message`` as a thread run's first event after
``run.queued``. A forked run's stream starts with the events of the steps it took over, each with
``data.replayed = {"run", "event"}`` naming where it first happened."""

EVENT_TYPES: frozenset[str] = frozenset(get_args(EventType))

#: Events about the run's lifecycle rather than its work; a fork does not take these over.
LIFECYCLE_EVENTS: frozenset[str] = frozenset(
    {
        "run.queued",
        "run.started",
        "run.resumed",
        "run.cancel_requested",
        "run.finished",
        "run.waiting",
        "run.pause_requested",
        "run.paused",
        "thread.message",
    }
)


class Event(StrictModel):
    """One entry of a run's event stream; ``id`` increases by one per event, from 1."""

    id: int
    run_id: str
    type: EventType
    ts: float = Field(description="Unix time in seconds.")
    data: dict[str, Any] = Field(default_factory=dict)


class CancelResponse(StrictModel):
    """What a cancel request did: ``cancelled`` (it was queued), ``cancelling`` (a worker stops it now), or
    the terminal status the run already had."""

    run: Run
    result: str


class WorkspaceFile(StrictModel):
    path: str
    size: int
    lines: int


class WorkspaceListing(StrictModel):
    run_id: str
    files: list[WorkspaceFile]
    total_bytes: int
