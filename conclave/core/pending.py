"""What one step commits, gathered while the step runs: its events, workspace changes and ledger ops.

A ``PendingCommit`` is filled through the run context (``emit``, the workspace's change hook, the meter's
ledger ops) and handed to ``RunStore.commit`` in one piece, so a step's effects land together or not at
all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conclave.schema import EventType

from .workspace import WorkspaceOp

__all__ = ["LedgerOp", "PendingCommit"]


@dataclass(frozen=True)
class LedgerOp:
    """A ledger change applied inside a commit: release hold ``res`` (if any), add ``used`` to every scope
    of ``scopes``, and add ``by`` to the breakdowns (``"<dimension>|<name>|<metric>"`` → amount).
    Amounts are integers (USD in pico-dollars), so sums are exact."""

    res: str | None
    scopes: tuple[str, ...]
    used: Mapping[str, int] = field(default_factory=dict)
    by: Mapping[str, int] = field(default_factory=dict)

    def wire(self) -> dict[str, Any]:
        """The JSON shape the Redis commit script reads (amounts as decimal strings: Lua numbers are
        doubles, strings reach ``HINCRBY`` exactly)."""
        return {
            "res": self.res or "",
            "scopes": list(self.scopes),
            "used": {k: str(int(v)) for k, v in self.used.items() if v},
            "by": {k: str(int(v)) for k, v in self.by.items() if v},
        }


@dataclass
class PendingCommit:
    """The effects of one step, in the order they happened (the last workspace op per path wins)."""

    events: list[tuple[EventType, dict[str, Any]]] = field(default_factory=list)
    workspace: dict[str, WorkspaceOp] = field(default_factory=dict)
    ledger: list[LedgerOp] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.events or self.workspace or self.ledger)

    def absorb(self, other: PendingCommit) -> PendingCommit:
        """``other`` followed by this one, as one commit (loose changes flushed with the next step)."""
        return PendingCommit(
            events=other.events + self.events,
            workspace={**other.workspace, **self.workspace},
            ledger=other.ledger + self.ledger,
        )
