"""Budget awareness: the BATS-style ``<budget>`` block an agent sees at each step.

An agent that does not know its budget either stops exploring too early or is cut off mid-thought.
So, at each step, the agent loop puts a short block into the context, right after the latest tool
results: for every limit, what is used and what is left, plus a policy level with instructions:

* HIGH (>= 70 % left): explore freely.
* MEDIUM (30–70 %): focus on the most promising leads.
* LOW (10–30 %): stop exploring, start the answer.
* CRITICAL (< 10 %, or only one model call left): answer now, with no more tool calls. The loop
  then makes one last call without tools so the run ends with the best answer it can give.

The level is that of the tightest limit. Per-tool caps (``tool_calls.search``) are listed but do
not set the level: running out of one tool does not stop the agent from answering.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from conclave.core.ledger import ROOT, enclosing, limit_label
from conclave.core.money import PICO
from conclave.core.store import LedgerSnapshot

__all__ = ["BudgetLine", "BudgetView", "INSTRUCTIONS", "Level", "budget_view", "level_for"]


class Level(StrEnum):
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"
    CRITICAL = "CRITICAL"


INSTRUCTIONS: dict[Level, str] = {
    Level.HIGH: "Budget is ample. Explore: use tools to gather and check what you need.",
    Level.MEDIUM: "Budget is half used. Focus on the most promising leads and avoid repeating calls.",
    Level.LOW: "Budget is low. Stop exploring; make only the calls you need to finish, then answer.",
    Level.CRITICAL: "Budget is nearly gone. Do not call tools. Give your best final answer now.",
}


def level_for(fraction_left: float) -> Level:
    """HIGH >= 0.7, MEDIUM >= 0.3, LOW >= 0.1, else CRITICAL."""
    if fraction_left >= 0.7:
        return Level.HIGH
    if fraction_left >= 0.3:
        return Level.MEDIUM
    if fraction_left >= 0.1:
        return Level.LOW
    return Level.CRITICAL


@dataclass(frozen=True)
class BudgetLine:
    limit: str  # as users name it: usd, output_tokens, tool_calls.search, wall_seconds
    scope: str
    used: float
    cap: float
    left: float

    @property
    def fraction_left(self) -> float:
        return max(0.0, self.left / self.cap) if self.cap > 0 else 0.0

    @property
    def sets_level(self) -> bool:
        return not self.limit.startswith("tool_calls.")

    def render(self) -> str:
        where = "" if self.scope == ROOT else f" ({self.scope})"
        if self.limit == "usd":
            nums = f"used ${self.used:.4f} of ${self.cap:.4f}, ${max(self.left, 0):.4f} left"
        elif self.limit == "wall_seconds":
            nums = f"used {self.used:.0f}s of {self.cap:.0f}s, {max(self.left, 0):.0f}s left"
        else:
            nums = f"used {self.used:.0f} of {self.cap:.0f}, {max(self.left, 0):.0f} left"
        return f"{self.limit}{where}: {nums} ({self.fraction_left:.0%})"


@dataclass(frozen=True)
class BudgetView:
    lines: tuple[BudgetLine, ...]
    level: Level
    binding: str | None  # the limit that set the level

    def render(self) -> str:
        body = "\n".join(line.render() for line in self.lines)
        return f"<budget>\n{body}\nlevel: {self.level.value}\n{INSTRUCTIONS[self.level]}\n</budget>"


def budget_view(
    snap: LedgerSnapshot,
    *,
    scope: str = ROOT,
    wall_cap_s: float | None = None,
    wall_used_s: float | None = None,
) -> BudgetView | None:
    """The block for an agent charging ``scope`` (its own caps and those of every enclosing
    scope), or None when no limit applies."""
    scopes = set(enclosing(scope))
    lines: list[BudgetLine] = []
    for (sc, limit), cap in sorted(snap.caps.items()):
        if sc not in scopes:
            continue
        used = snap.used.get((sc, limit), 0)
        left = snap.left(sc, limit) or 0
        scale = PICO if limit == "usd" else 1
        lines.append(BudgetLine(limit_label(limit), sc, used / scale, cap / scale, left / scale))
    if wall_cap_s is not None:
        spent = wall_used_s or 0.0
        lines.append(BudgetLine("wall_seconds", ROOT, spent, wall_cap_s, wall_cap_s - spent))
    if not lines:
        return None
    level = Level.HIGH
    binding: str | None = None
    worst = 2.0
    for line in lines:
        if not line.sets_level:
            continue
        frac = line.fraction_left
        lvl = level_for(frac)
        # One model call left is the last chance to answer, whatever the fraction says.
        if line.limit == "model_calls" and line.left <= 1:
            lvl = Level.CRITICAL
            frac = min(frac, 0.0)
        if frac < worst:
            worst, binding = frac, line.limit
        if list(Level).index(lvl) > list(Level).index(level):
            level = lvl
            binding = line.limit
    return BudgetView(tuple(lines), level, binding)
