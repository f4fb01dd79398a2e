"""The live view of a run (``submit --follow``, ``up --demo``): stage, model turns and tool calls,
tokens, and one bar per budget limit of the run burning down."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import httpx
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from conclave.schema import Event
from conclave.sdk import Client, ConclaveError

from .common import note, out
from .steer import prompt_approvals

__all__ = ["follow"]

COST_EVERY_S = 2.0
"""How often the budget bars are refreshed from the ledger (``GET /v1/runs/{id}/cost``)."""

_LOGGED = ("tool.call", "stage.started", "stage.finished", "run.resumed", "agent.stopped")


@dataclass
class _Tally:
    """What the view shows, counted from the events."""

    stage: str = "queued"
    tokens_in: int = 0
    tokens_out: int = 0
    model_turns: int = 0
    tool_calls: int = 0
    bars: dict[str, TaskID] = field(default_factory=dict)

    def add(self, ev: Event) -> None:
        if ev.type == "model.call":
            u = ev.data.get("usage", {})
            self.tokens_in += int(u.get("prompt_tokens", 0))
            self.tokens_out += int(u.get("completion_tokens", 0))
            self.model_turns += 1
        elif ev.type == "tool.call":
            self.tool_calls += 1
        elif ev.type in ("stage.started", "run.started", "run.resumed"):
            self.stage = str(ev.data.get("stage") or ev.type.split(".", 1)[1])


def follow(c: Client, run_id: str) -> bool:
    """Show the run live until it finishes (the view goes away then; the caller prints the result). When
    the run waits for approval, ask on the terminal (``steer.prompt_approvals``); False when nobody
    answered (end of input) and the run still waits."""
    tally = _Tally()
    last_cost = 0.0
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=out,
        transient=True,
    ) as p:
        main = p.add_task("queued", total=None, note="")
        for ev in c.runs.events(run_id):
            tally.add(ev)
            p.update(
                main,
                description=f"[bold]{tally.stage}[/]  {tally.model_turns} model turns, {tally.tool_calls} tool calls",
                note=f"tokens {tally.tokens_in} in / {tally.tokens_out} out",
            )
            if ev.type in _LOGGED:
                note(f"[dim]#{ev.id}[/] {ev.type} {json.dumps(ev.data, default=str)[:160]}", highlight=False)
            if ev.type == "run.waiting":
                p.stop()
                answered = prompt_approvals(c, run_id)
                p.start()
                if not answered:
                    return False
            now = time.monotonic()
            if now - last_cost > COST_EVERY_S or ev.type == "run.finished":
                last_cost = now
                _update_budget_bars(c, run_id, p, tally)
    return True


def _update_budget_bars(c: Client, run_id: str, p: Progress, tally: _Tally) -> None:
    try:
        cost = c.runs.cost(run_id)
    except (ConclaveError, httpx.HTTPError):  # the view must never stop the follow
        return
    for lim in cost.limits:
        if lim.scope != "run":
            continue
        if lim.limit not in tally.bars:
            tally.bars[lim.limit] = p.add_task(f"budget {lim.limit}", total=lim.cap or 1, note="")
        p.update(tally.bars[lim.limit], completed=min(lim.used, lim.cap), note=f"{lim.used:g} of {lim.cap:g} used")
