"""Runs that people steer: approvals, threads, pause / resume and forks, as records on the wire.

- **Approvals.** A tool call that needs a person (the task's ``approval`` policy, or the ``ask_human``
  tool) becomes an ``Approval``: the call, its arguments, the budget it would reserve, and its status.
  A person answers with an ``ApprovalDecision``: ``approve`` (for ``ask_human``: with the ``answer``),
  ``deny`` (the ``reason`` is what the model reads) or ``edit`` (new ``arguments``, checked against the
  tool's schema).
- **Threads.** A ``Thread`` groups runs into one conversation; a ``ThreadMessage`` is a follow-up that
  starts the thread's next run. While a run of the thread is active, its ``multitask`` policy decides.
- **Forks.** A ``ForkRequest`` starts a new run from a committed step of another (``StepListing`` lists
  them in commit order).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, model_validator

from conclave.schema.base import StrictModel
from conclave.schema.budget import Budget
from conclave.schema.runs import THREAD_ID_PATTERN, ApprovalMode, ChatMessageIn, OnApprovalTimeout, Run, RunStatus

__all__ = [
    "Approval",
    "ApprovalDecision",
    "ApprovalDecisionResponse",
    "ApprovalKind",
    "ApprovalList",
    "ApprovalStatus",
    "Decision",
    "ForkRequest",
    "MultitaskPolicy",
    "RunControlResponse",
    "StepInfo",
    "StepListing",
    "Thread",
    "ThreadCreate",
    "ThreadMessage",
    "ThreadMessageResponse",
    "ThreadPage",
    "ThreadRuns",
]


class ApprovalStatus(StrEnum):
    """``pending`` until decided; then ``approved``, ``denied``, ``edited`` (approved with new arguments)
    or ``expired`` (its timeout passed, or the run ended or was superseded while it waited)."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EDITED = "edited"
    EXPIRED = "expired"


ApprovalKind = Literal["tool", "question"]
"""``tool``: a call waiting to be allowed. ``question``: the agent's ``ask_human`` call, waiting for an answer."""

Decision = Literal["approve", "deny", "edit"]


class Approval(StrictModel):
    """One call waiting for (or decided by) a person. ``reserve`` is what the call will hold in the run's
    budget when it runs (``{limit: amount}``, USD in pico-dollars)."""

    id: str
    run_id: str
    tool: str
    kind: ApprovalKind = "tool"
    arguments: dict[str, Any] = Field(default_factory=dict, description="The arguments the model gave.")
    step_key: str = Field(description="The durable step the call runs in once decided.")
    requested_at: datetime
    reserve: dict[str, int] = Field(default_factory=dict)
    status: ApprovalStatus = ApprovalStatus.PENDING
    reason: str | None = Field(default=None, description="Why it was denied or expired; shown to the model.")
    edited_arguments: dict[str, Any] | None = Field(default=None, description="The arguments a person chose.")
    answer: str | None = Field(default=None, description="A person's answer to an ask_human question.")
    decided_at: datetime | None = None
    expires_at: datetime | None = None
    on_timeout: OnApprovalTimeout = "deny"
    parameters: dict[str, Any] = Field(default_factory=dict, description="The tool's JSON schema (checks edits).")


class ApprovalDecision(StrictModel):
    """A person's decision on one pending call of a waiting run."""

    approval_id: str = Field(min_length=1, max_length=128)
    decision: Decision
    reason: str | None = Field(default=None, max_length=10_000, description="Shown to the model (deny) or recorded.")
    arguments: dict[str, Any] | None = Field(default=None, description="The call's new arguments (edit only).")
    answer: str | None = Field(
        default=None, max_length=100_000, description="The answer to an ask_human question (approve)."
    )

    @model_validator(mode="after")
    def _arguments_for_edit(self) -> ApprovalDecision:
        if self.decision == "edit" and self.arguments is None:
            raise ValueError("arguments: an edit needs the new arguments")
        if self.decision != "edit" and self.arguments is not None:
            raise ValueError(f"arguments: only an edit takes arguments, not {self.decision!r}")
        return self


class ApprovalList(StrictModel):
    approvals: list[Approval]


class ApprovalDecisionResponse(StrictModel):
    approval: Approval
    run: Run


class RunControlResponse(StrictModel):
    """What a pause or resume did (``result``) and the run as it is now."""

    run: Run
    result: str


class MultitaskPolicy(StrEnum):
    """What a new message on a thread does while a run of the thread is active (queued, running,
    waiting or paused). ``reject``: 409. ``enqueue``: the new run starts when the active one ends.
    ``interrupt``: the active run stops at its next step boundary (status ``paused``, keeping what it
    committed) and the new run continues from it. ``rollback``: the active run is cancelled and left
    out of the thread's conversation and workspace, and the new run starts from the run before it."""

    REJECT = "reject"
    ENQUEUE = "enqueue"
    INTERRUPT = "interrupt"
    ROLLBACK = "rollback"


class ThreadCreate(StrictModel):
    """``POST /v1/threads``. Without an ``id`` one is made."""

    id: str | None = Field(default=None, pattern=THREAD_ID_PATTERN)
    multitask: MultitaskPolicy = MultitaskPolicy.REJECT
    metadata: dict[str, str] = Field(default_factory=dict, max_length=64)


class Thread(StrictModel):
    id: str
    tenant: str = "default"
    created_at: datetime
    multitask: MultitaskPolicy = MultitaskPolicy.REJECT
    metadata: dict[str, str] = Field(default_factory=dict)
    runs: int = Field(default=0, description="Runs started on the thread so far.")
    active_run: str | None = Field(default=None, description="The run the thread is busy with, if any.")
    pending_runs: list[str] = Field(default_factory=list, description="Enqueued runs, in the order they start.")
    last_run: str | None = None


class ThreadPage(StrictModel):
    threads: list[Thread]
    next_cursor: str | None = None


class ThreadRuns(StrictModel):
    """A thread's runs, oldest first."""

    thread: Thread
    runs: list[Run]


class ThreadMessage(StrictModel):
    """A follow-up on a thread (``POST /v1/threads/{id}/runs``). Fields left out are taken from the
    thread's latest run (kind, model, tools, budget…), so a follow-up needs only its ``input``."""

    input: str | list[ChatMessageIn]
    multitask: MultitaskPolicy | None = Field(default=None, description="Overrides the thread's policy once.")
    kind: str | None = Field(default=None, min_length=1, max_length=64)
    system: str | None = Field(default=None, max_length=100_000)
    model: str | None = Field(default=None, max_length=256)
    tools: list[str] | None = Field(default=None, max_length=64)
    budget: Budget | None = None
    max_steps: int | None = Field(default=None, ge=1, le=10_000)
    options: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    approval: dict[str, ApprovalMode] | None = None
    approval_timeout_s: float | None = Field(default=None, gt=0, le=30 * 86400)
    approval_on_timeout: OnApprovalTimeout | None = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=256)


class ThreadMessageResponse(StrictModel):
    """``result``: ``started`` (nothing else was active), ``enqueued``, ``interrupting`` or ``rolling_back``
    (the active run is being stopped; the new one starts when it has), or ``existing`` (an idempotent
    repeat: the first run of that key)."""

    run: Run
    thread: Thread
    result: str


class ForkRequest(StrictModel):
    """``POST /v1/runs/{id}/fork``: continue from ``step_key`` (included) with optional changes."""

    step_key: str = Field(min_length=1, max_length=1024)
    input: str | list[ChatMessageIn] | None = None
    options: dict[str, Any] | None = None
    budget: Budget | None = None


class StepInfo(StrictModel):
    """A committed step: its key, its place in commit order (from 0), and the run's last event id after
    it committed."""

    key: str
    index: int
    event_id: int


class StepListing(StrictModel):
    run_id: str
    status: RunStatus
    steps: list[StepInfo]
