"""The small records of the ``RunStore`` contract (what its operations take and return), apart from the
protocols so that every part of the contract (``store.py``, ``store_tenants.py``, …) can share them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from conclave.schema import Cost, Run, RunStatus, StopReason, Usage

__all__ = [
    "CancelOutcome",
    "CancelResult",
    "ClaimOutcome",
    "ClaimResult",
    "CommitResult",
    "DeadLetter",
    "FinishFields",
    "LeaseLost",
    "LedgerSnapshot",
    "QueueDepth",
    "QueueEntry",
    "Refusal",
    "Reserved",
    "SubmitResult",
]


class LeaseLost(RuntimeError):
    """Another worker owns the run now; this worker must stop touching it."""


@dataclass(frozen=True)
class QueueEntry:
    """One entry of the run queue: its id in the queue and the run it names (``rid`` may be empty or
    unknown for a poison entry; ``claim`` dead-letters those)."""

    qid: str
    rid: str


class ClaimOutcome(StrEnum):
    """What ``claim`` found. ``ok``: the caller owns the run now. ``terminal``: it had already ended.
    ``dead``: it was claimed too often and is dead-lettered. ``missing``: no such run (the entry is
    acknowledged and dead-lettered). ``stale``: the entry is out of date (the run is paused or waiting, or
    was re-queued with a new entry since); it is acknowledged and the run is left alone."""

    OK = "ok"
    TERMINAL = "terminal"
    DEAD = "dead"
    MISSING = "missing"
    STALE = "stale"


@dataclass(frozen=True)
class ClaimResult:
    outcome: ClaimOutcome
    attempt: int = 0
    status: RunStatus | None = None
    #: The store's clock at the claim and the run's first start on it (Unix seconds), for wall-clock
    #: budgets that hold whatever the worker's own clock says.
    clock: float | None = None
    started_at: float | None = None


class CancelOutcome(StrEnum):
    """What ``cancel`` did. ``cancelled``: it was queued and is cancelled now. ``cancelling``: a worker runs
    it and is told (it stops at once, keeping its partial result). ``terminal``: it had already ended
    (``status`` says how). ``missing``: no such run for this tenant."""

    CANCELLED = "cancelled"
    CANCELLING = "cancelling"
    TERMINAL = "terminal"
    MISSING = "missing"


@dataclass(frozen=True)
class CancelResult:
    outcome: CancelOutcome
    status: RunStatus | None = None

    @property
    def label(self) -> str:
        """The word the API reports: the outcome, or the terminal status the run already had."""
        return self.status.value if self.outcome is CancelOutcome.TERMINAL and self.status else self.outcome.value


@dataclass(frozen=True)
class SubmitResult:
    run: Run
    created: bool
    #: The hash of the spec the run was created with (differs from the caller's when an idempotency key
    #: was reused for a different task).
    spec_hash: str


@dataclass(frozen=True)
class CommitResult:
    #: The id of the run's last event after the commit.
    last_event_id: int
    cancel_requested: bool
    #: A pause was asked (``SteerStore.request_pause``): stop before the next step.
    pause_requested: bool = False


@dataclass
class FinishFields:
    """What a run's ending records besides its status."""

    stop_reason: StopReason
    output: str | None = None
    result: dict[str, Any] | None = None
    stop_detail: str | None = None
    error: str | None = None
    cost: Cost | None = None
    usage: Usage | None = None
    exhausted_limit: str | None = None


@dataclass(frozen=True)
class QueueDepth:
    #: Entries no worker has read yet.
    waiting: int
    #: Entries read by a worker and not yet acknowledged.
    in_flight: int


@dataclass(frozen=True)
class DeadLetter:
    id: str
    rid: str
    reason: str
    attempts: int = 0


@dataclass(frozen=True)
class Refusal:
    """A reservation the ledger refused: ``limit`` in ``scope`` has only ``room`` left."""

    scope: str
    limit: str
    room: int


@dataclass(frozen=True)
class RunCaps:
    """What a run's calls reserve against, as ``set_caps`` leaves it: the run's own capped ``(scope,
    limit)`` pairs as stored (a resumed run keeps those it first had, so they never change while it runs)
    and whether its tenant or key has a budget. A call none of whose limits is capped in its scopes, in a
    run whose tenant and key have no budget, holds nothing: its reservation needs no store operation."""

    own: frozenset[tuple[str, str]]
    outer: bool


@dataclass(frozen=True)
class Reserved:
    """A reservation that fit (or needed no hold). ``view`` holds the caps, committed usage and holds of
    the scopes reserved in, right after the hold — what the ``<budget>`` block shows — so knowing the
    budget costs no read of its own."""

    view: LedgerSnapshot


@dataclass
class LedgerSnapshot:
    """A run's ledger at one instant: caps, committed usage, held reservations (by scope and limit) and
    the breakdowns (``by[(dimension, name, metric)]``, e.g. ``("model", "smollm2-135m", "output_tokens")``)."""

    caps: dict[tuple[str, str], int] = field(default_factory=dict)
    used: dict[tuple[str, str], int] = field(default_factory=dict)
    reserved: dict[tuple[str, str], int] = field(default_factory=dict)
    #: Usage reported above the room a capped limit had: recorded, never counted as used.
    over: dict[tuple[str, str], int] = field(default_factory=dict)
    by: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def left(self, scope: str, limit: str) -> int | None:
        cap = self.caps.get((scope, limit))
        if cap is None:
            return None
        return cap - self.used.get((scope, limit), 0) - self.reserved.get((scope, limit), 0)
