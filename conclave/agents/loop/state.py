"""What one agent holds while it runs: its run, options, tools, conversation and progress.

The loop (``agent``), its tool calls (``calls``), compaction and endings all work on an
``AgentState``; ``Stop`` ends the loop from any of them.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from conclave.core.context import RunContext
from conclave.schema import RunStatus, StopReason
from conclave.tools.base import Tool
from conclave.tools.registry import ToolRegistry

from .conversation import Conversation
from .options import AgentOptions, AgentSetup, tool_definition

__all__ = ["AgentState", "Progress", "Stop"]


class Stop(Exception):
    """Ends the loop with a reason; raised from anywhere inside it."""

    def __init__(
        self, reason: StopReason, status: RunStatus, detail: str | None = None, output: str | None = None
    ) -> None:
        super().__init__(detail or reason.value)
        self.reason, self.status, self.detail, self.output = reason, status, detail, output


_LONG_INT = re.compile(r"\d{19}")


def _canonical_args(arguments: str) -> str:
    """The call's arguments with their keys sorted, so ``{"a":1,"b":2}`` and ``{"b": 2, "a": 1}``
    count as one call (by orjson: this runs for every call of every step). An integer orjson
    cannot hold (beyond 64 bits: it would read it as a float, and two such integers could look
    alike) goes through the standard library."""
    if _LONG_INT.search(arguments):
        try:
            return json.dumps(json.loads(arguments), sort_keys=True)
        except (ValueError, TypeError):
            return arguments.strip()
    try:
        return orjson.dumps(orjson.loads(arguments), option=orjson.OPT_SORT_KEYS).decode()
    except (ValueError, TypeError):
        return arguments.strip()


@dataclass
class Progress:
    """What the loop counts as it goes: repeated calls and errors (stuck), tools used, budget level."""

    stuck_repeats: int
    signatures: Counter[str] = field(default_factory=Counter)
    error_streak: list[str] = field(default_factory=list)
    tool_counts: Counter[str] = field(default_factory=Counter)
    level: str | None = None

    def check_stuck(self, results: list[dict[str, Any]], calls: list[dict[str, Any]]) -> None:
        """Raise ``Stop(stuck)`` when a call repeated with the same result, or the same error, ``n`` times."""
        n = self.stuck_repeats
        for call, r in zip(calls, results, strict=True):
            sig = f"{call['name']}\x00{_canonical_args(call['arguments'])}\x00{r['content']}"
            self.signatures[sig] += 1
            if self.signatures[sig] >= n:
                raise Stop(
                    StopReason.STUCK,
                    RunStatus.FAILED,
                    f"the call {call['name']}({call['arguments'][:200]}) returned the same result {n} times",
                )
            if r["is_error"]:
                self.error_streak.append(r["content"])
            else:
                self.error_streak.clear()
            tail = self.error_streak[-n:]
            if len(tail) == n and len(set(tail)) == 1:
                raise Stop(StopReason.STUCK, RunStatus.FAILED, f"the same error {n} times in a row: {tail[0][:300]}")


class AgentState:
    """One agent of a run: who it is, what it may call, what it has seen and counted so far."""

    def __init__(
        self,
        ctx: RunContext,
        opts: AgentOptions,
        tools: dict[str, Tool],
        registry: ToolRegistry,
        setup: AgentSetup | None = None,
    ) -> None:
        self.ctx = ctx
        self.opts = opts
        self.tools = tools
        self.registry = registry
        self.setup = setup or AgentSetup.from_spec(ctx)
        self.meter = self.setup.meter
        self.p = self.setup.prefix
        self.model = self.setup.model or ctx.model
        self.answer_tool = opts.tool_choice == "required"
        self.conv = Conversation(self.setup, opts, [tool_definition(t) for t in tools.values()], self.model)
        self.progress = Progress(stuck_repeats=opts.stuck_repeats)
        self.sem = asyncio.Semaphore(opts.max_parallel)
        self.groups = registry.groups()

    def who(self) -> dict[str, str]:
        """The agent's name in its events, when the run has several agents."""
        return {"agent": self.setup.name} if self.p else {}
