"""Keeping the context inside the model's window: old tool results move into the workspace.

When the next request nears ``compact_at`` of the window, the oldest results (outside the last
``keep_recent_turns``) are written to ``logs/tool_results/`` and replaced in the conversation by a
pointer and an extract (``conclave.agents.summarize``), as few as make the request fit. The move is
one durable step, so a replay applies the same pointers without writing anything again.
"""

from __future__ import annotations

from typing import Any

from conclave.agents.meter import BYTES_PER_TOKEN_ESTIMATE

from ..summarize import pointer
from .state import AgentState

__all__ = ["archive_path", "compact"]


async def compact(a: AgentState, i: int) -> None:
    """Move old tool results into the workspace when the next request nears the window."""
    window = a.meter.router.context_window(a.model)
    if not window:
        return
    conv = a.conv
    limit = int(window * a.opts.compact_at)

    def need(pointers: dict[str, str] | None = None) -> int:
        """What the next request (without its budget block) would take of the window."""
        return conv.prompt_bound(pointers=pointers) // BYTES_PER_TOKEN_ESTIMATE + a.opts.max_tokens

    if need() <= limit:
        return
    keep_from = max(0, len(conv.turns) - a.opts.keep_recent_turns)
    candidates = [
        (t, r)
        for t, turn in enumerate(conv.turns[:keep_from])
        for r in turn.get("results", [])
        if r["id"] not in conv.compacted and len(r["content"]) > 200
    ]
    if not candidates:
        return
    chosen: list[tuple[int, dict[str, Any]]] = []
    trial: dict[str, str] = {}
    for t, r in candidates:
        trial[r["id"]] = pointer(archive_path(a.p, t, r), r["content"], tool=r["name"])
        chosen.append((t, r))
        if need(trial) <= limit:
            break

    async def body() -> dict[str, str]:
        out: dict[str, str] = {}
        for t, r in chosen:
            path = archive_path(a.p, t, r)
            a.ctx.workspace.write(path, r["content"])
            out[r["id"]] = pointer(path, r["content"], tool=r["name"])
        await a.ctx.emit("log", {"turn": i, "message": f"moved {len(out)} old tool results to logs/", **a.who()})
        return out

    done: dict[str, str] = await a.ctx.step(f"{a.p}turn/{i}/compact", body)
    conv.compact(done)


def archive_path(prefix: str, t: int, r: dict[str, Any]) -> str:
    """Where turn ``t``'s result ``r`` goes in the workspace (the agent's prefix keeps agents apart)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in r["name"])[:40]
    who = "" if not prefix else "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in prefix.strip("/")) + "-"
    return f"logs/tool_results/{who}turn-{t:03d}-{safe}-{r['id'][-8:]}.md"
