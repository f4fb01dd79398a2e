"""The ``SteerStore`` contract: the durable side of runs that people steer — pause and resume, calls that
wait for a person's approval, threads of runs, and forks from a committed step.

Part of ``RunStore`` (its bases); both backends implement it (``InMemorySteerMixin`` in
``conclave.core.memory_steer`` with its bases ``memory_approvals`` and ``memory_threads``;
``RedisSteerMixin`` in ``conclave.controller.redis_steer``, every change one Lua script) and ``tests/conformance/test_steer_contract.py`` checks both.

States. ``waiting`` and ``paused`` are not terminal and hold **no lease, no worker and no ledger hold**: the
runner leaves the body at a step boundary, the store records the state and acknowledges the queue entry.
Whatever wakes the run (the last pending decision, ``resume``, a thread advancing) puts a *new* entry on
the queue and any worker continues from the checkpoint. An entry left over from before (a run paused while
queued, or re-queued since) is *stale*: ``claim`` acknowledges it and answers ``stale``. A clean hand-over
(pause, wait) is not a crash: it does not count towards ``max_attempts``. Time spent waiting or paused is
not running time: ``Run.idle_seconds`` sums it, so a ``wall_seconds`` budget counts only running.

The contract, operation by operation:

- **Pause.** ``request_pause`` on a running run sets its pause flag (the next ``commit`` answers
  ``pause_requested``; the runner stops before the next step and calls ``pause``), and appends
  ``run.pause_requested``; a queued run is paused at once; a waiting run is refused (``waiting``: decide
  or cancel it). ``pause`` (the owner, at a step boundary): ``running → paused``, owner cleared, every hold
  released, the queue entry acknowledged, ``run.paused {reason, detail}``; fenced like ``finish``.
  ``resume``: ``paused → queued`` with a new entry (behind its thread's active run if another is active),
  ``run.resumed {reason: "resume"}``; a run that is not paused is ``not_paused``, one paused by a thread's
  ``interrupt`` is ``superseded`` (a later run continued from it). ``paused_runs`` lists a tenant's.
- **Approvals.** ``wait_for_approval`` (the owner, at a step boundary): records each requested call as a
  pending ``Approval`` (once per id), ``running → waiting`` with everything ``pause`` releases,
  ``approval.requested`` per call then ``run.waiting``. A pending approval exists only while its run
  waits. ``decide`` is atomic: the first decision of a pending approval wins (``decided``), any later one
  gets ``already_decided``, one for a run that is not waiting ``not_waiting``, another tenant ``missing``;
  it appends ``approval.resolved`` and, when no approval of the run is pending any more, re-queues it
  (``run.resumed {reason: "approval"}``). The decision is the durable record the resumed run replays.
  ``expire_approvals`` applies timeouts on the store's clock: ``deny`` policy → ``expired`` and the run
  continues; ``fail`` → the run ends ``failed`` / ``approval_timeout``. A run that ends or is superseded
  while waiting expires its pending approvals.
- **Steps.** ``commit`` also records the order of committed steps (``step_log``: key, index, the last event
  id after it) and what each commit overwrote in the workspace, so a fork can rebuild the workspace as it
  was after any step.
- **Forks.** ``fork`` creates a queued run (spec as given) whose checkpoint holds the source's committed
  steps up to and including ``step_key`` (copied, in order), whose workspace is the source's as it was
  right after that step, and whose event stream starts with ``run.queued`` followed by the source's
  non-lifecycle events up to that step, each carrying ``data.replayed = {"run", "event"}``. The source is
  not touched. Its ledger starts empty: a fork pays only for what it executes.
- **Threads.** ``create_thread`` / ``get_thread`` / ``list_threads`` / ``thread_runs`` (oldest first), all
  tenant-scoped (another tenant's thread does not exist for the caller). ``post_message`` creates a run
  on a thread (the thread too, if the tenant has none of that id) and applies the multitask policy
  atomically: with no active run it starts; else ``reject`` (no run created), ``enqueue`` (it starts when
  the active one ends), ``interrupt`` (the active run is paused at its next step boundary, at once when it
  is not running; reason ``interrupt``) or ``rollback`` (the active run is cancelled and dropped from the
  thread's conversation). Enqueued runs start one at a time, in order. ``thread_history`` gives a run the
  earlier runs of its thread that count for its conversation (dropped ones left out), oldest first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol, runtime_checkable

from conclave.schema import (
    Approval,
    ApprovalKind,
    ApprovalStatus,
    Decision,
    MultitaskPolicy,
    OnApprovalTimeout,
    Run,
    RunStatus,
    StepInfo,
    TaskSpec,
    Thread,
    ThreadPage,
)

__all__ = [
    "ApprovalRequest",
    "DecideOutcome",
    "DecideResult",
    "ForkOutcome",
    "ForkResult",
    "MessageOutcome",
    "MessageResult",
    "PauseOutcome",
    "PauseReason",
    "PauseResult",
    "ResumeOutcome",
    "ResumeResult",
    "SteerStore",
    "ThreadResult",
    "approval_id",
]

PauseReason = Literal["user", "tenant_budget", "interrupt"]
"""Why a run pauses: a person asked (``user``), its tenant's budget ran out (``tenant_budget``), or a new
message on its thread interrupted it (``interrupt``)."""


def approval_id(run_id: str, step_key: str) -> str:
    """Stable per call: a resumed run asking again for the same call names the same approval."""
    return "apr_" + hashlib.sha256(f"{run_id}\x00{step_key}".encode()).hexdigest()[:20]


class PauseOutcome(StrEnum):
    """``pausing``: it runs and stops at its next step boundary. ``paused``: it is paused now (it was
    queued, or already paused). ``waiting``: it waits for approval and cannot be paused. ``terminal``: it
    had ended. ``missing``: no such run for this tenant."""

    PAUSING = "pausing"
    PAUSED = "paused"
    WAITING = "waiting"
    TERMINAL = "terminal"
    MISSING = "missing"


@dataclass(frozen=True)
class PauseResult:
    outcome: PauseOutcome
    status: RunStatus | None = None

    @property
    def label(self) -> str:
        return self.status.value if self.outcome is PauseOutcome.TERMINAL and self.status else self.outcome.value


class ResumeOutcome(StrEnum):
    """``resumed``: back on the queue (``enqueued``: behind its thread's active run). ``not_paused``: it is
    not paused (``status`` says what it is). ``superseded``: paused by a thread interrupt, a later run
    continued from it. ``missing``: no such run for this tenant."""

    RESUMED = "resumed"
    ENQUEUED = "enqueued"
    NOT_PAUSED = "not_paused"
    SUPERSEDED = "superseded"
    MISSING = "missing"


@dataclass(frozen=True)
class ResumeResult:
    outcome: ResumeOutcome
    status: RunStatus | None = None


@dataclass(frozen=True)
class ApprovalRequest:
    """A call that waits for a person. ``id`` is ``approval_id(run, step_key)``; ``reserve`` is what the
    call will hold in the budget; ``parameters`` the tool's JSON schema (edits are checked against it)."""

    id: str
    tool: str
    step_key: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    kind: ApprovalKind = "tool"
    reserve: Mapping[str, int] = field(default_factory=dict)
    parameters: Mapping[str, Any] = field(default_factory=dict)
    timeout_s: float | None = None
    on_timeout: OnApprovalTimeout = "deny"


class DecideOutcome(StrEnum):
    """``decided``: this decision is the one recorded. ``already_decided``: another came first (the
    approval's status says which). ``not_waiting``: the run waits for nothing. ``missing``: no such run
    for this tenant, or no such approval."""

    DECIDED = "decided"
    ALREADY_DECIDED = "already_decided"
    NOT_WAITING = "not_waiting"
    MISSING = "missing"


@dataclass(frozen=True)
class DecideResult:
    outcome: DecideOutcome
    approval: Approval | None = None
    status: RunStatus | None = None
    #: The decision was the run's last pending one: it is back on the queue.
    resumed: bool = False


class ForkOutcome(StrEnum):
    FORKED = "forked"
    MISSING = "missing"
    NO_STEP = "no_step"


@dataclass(frozen=True)
class ForkResult:
    outcome: ForkOutcome
    run: Run | None = None


@dataclass(frozen=True)
class ThreadResult:
    thread: Thread
    created: bool


class MessageOutcome(StrEnum):
    """What a message on a thread did: ``started``; ``enqueued`` (behind the active run); ``interrupting`` /
    ``rolling_back`` (the active run is being stopped; the new one starts after it); ``rejected`` (the
    thread's policy is reject and ``active`` runs; no run was made); ``existing`` (its idempotency key
    names an earlier run, returned)."""

    STARTED = "started"
    ENQUEUED = "enqueued"
    INTERRUPTING = "interrupting"
    ROLLING_BACK = "rolling_back"
    REJECTED = "rejected"
    EXISTING = "existing"


@dataclass(frozen=True)
class MessageResult:
    outcome: MessageOutcome
    thread: Thread
    run: Run | None = None
    #: The run that was active when the message came (the one rejected against, interrupted, rolled back).
    active: str | None = None
    #: The hash of the spec of ``run`` (for an ``existing`` run: the first spec's).
    spec_hash: str = ""


@runtime_checkable
class SteerStore(Protocol):
    """See the module docstring for the contract every method keeps."""

    # -- pause and resume -------------------------------------------------------------------------
    async def request_pause(self, rid: str, *, tenant: str, reason: PauseReason = "user") -> PauseResult: ...

    async def pause(
        self, rid: str, owner: str, *, reason: PauseReason, detail: str | None = None, output: str | None = None
    ) -> bool:
        """The owner stops at a step boundary; False when it no longer owns the run. ``output`` is the
        partial answer so far, shown while paused."""

    async def resume(self, rid: str, *, tenant: str) -> ResumeResult: ...

    async def paused_runs(self, tenant: str, *, reason: PauseReason | None = None) -> list[str]: ...

    # -- approvals --------------------------------------------------------------------------------
    async def wait_for_approval(
        self, rid: str, owner: str, requests: Sequence[ApprovalRequest], *, output: str | None = None
    ) -> bool:
        """The owner stops at a step boundary to wait for ``requests``; False when it lost the run."""

    async def approvals(self, rid: str) -> list[Approval]:
        """Every approval of the run, in the order they were requested."""

    async def list_approvals(
        self, tenant: str, *, status: ApprovalStatus | None = None, limit: int = 100
    ) -> list[Approval]:
        """The tenant's approvals, newest first; ``pending`` ones are indexed on their own."""

    async def decide(
        self,
        rid: str,
        approval_id: str,
        *,
        tenant: str,
        decision: Decision,
        reason: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        answer: str | None = None,
    ) -> DecideResult: ...

    async def expire_approvals(self, *, limit: int = 100) -> int:
        """Apply the timeouts that have passed (the store's clock); returns how many expired."""

    # -- steps and forks --------------------------------------------------------------------------
    async def step_log(self, rid: str) -> list[StepInfo]:
        """The run's committed steps in commit order."""

    async def fork(
        self,
        rid: str,
        *,
        tenant: str,
        step_key: str,
        spec: TaskSpec,
        spec_hash: str | None = None,
        trace: Mapping[str, str] | None = None,
        key_id: str | None = None,
    ) -> ForkResult:
        """``key_id``: the API key that asked (its budget is charged too, as for ``submit``)."""

    # -- threads ----------------------------------------------------------------------------------
    async def create_thread(
        self,
        tenant: str,
        *,
        thread_id: str,
        multitask: MultitaskPolicy = MultitaskPolicy.REJECT,
        metadata: Mapping[str, str] | None = None,
    ) -> ThreadResult:
        """Create the thread, or return the existing one of that id (``created`` False)."""

    async def get_thread(self, thread_id: str, *, tenant: str) -> Thread | None: ...

    async def list_threads(self, tenant: str, *, limit: int = 50, cursor: str | None = None) -> ThreadPage:
        """Newest first; ``cursor`` is ``next_cursor`` of the previous page."""

    async def thread_runs(self, thread_id: str, *, tenant: str) -> list[str]:
        """The thread's run ids, oldest first."""

    async def post_message(
        self,
        spec: TaskSpec,
        *,
        tenant: str,
        multitask: MultitaskPolicy | None = None,
        spec_hash: str | None = None,
        trace: Mapping[str, str] | None = None,
        key_id: str | None = None,
    ) -> MessageResult:
        """A run on thread ``spec.thread_id`` under ``multitask`` (the thread's own policy when None);
        ``key_id`` as for ``submit``."""

    async def thread_history(self, rid: str) -> list[Run]:
        """The earlier runs of ``rid``'s thread that count for its conversation, oldest first."""
