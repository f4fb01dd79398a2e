"""The records ``InMemoryRunStore`` keeps per queue entry, per hold and per run (a test double's
state, shared by its mixins)."""

from __future__ import annotations

from dataclasses import dataclass, field

from conclave.schema import Event, Run

from .memory_tenants import OuterHold

__all__ = ["_Entry", "_Hold", "_RunData"]


@dataclass
class _Entry:
    qid: str
    rid: str
    consumer: str | None = None  # None: not yet delivered
    delivered_at: float = 0.0


@dataclass
class _Hold:
    owner: str
    expires: float
    held: dict[str, dict[str, int]]  # scope -> limit -> amount
    outer: list[OuterHold] = field(default_factory=list)


@dataclass
class _RunData:
    run: Run
    spec_hash: str
    key_id: str | None = None
    owner: str | None = None
    qid: str = ""
    trace: dict[str, str] | None = None
    events: list[Event] = field(default_factory=list)
    steps: dict[str, str] = field(default_factory=dict)
    commits: set[str] = field(default_factory=set)
    files: dict[str, bytes] = field(default_factory=dict)
    caps: dict[tuple[str, str], int] = field(default_factory=dict)
    used: dict[tuple[str, str], int] = field(default_factory=dict)
    reserved: dict[tuple[str, str], int] = field(default_factory=dict)
    over: dict[tuple[str, str], int] = field(default_factory=dict)
    by: dict[tuple[str, str, str], int] = field(default_factory=dict)
    holds: dict[str, _Hold] = field(default_factory=dict)
