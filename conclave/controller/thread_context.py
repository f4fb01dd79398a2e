"""What a run on a thread starts from: the thread's conversation so far and its latest workspace.

The **conversation** a thread run sees is, for each earlier run of the thread that counts (rolled-back runs
do not), oldest first: the run's own input (its user and assistant messages; system messages stay with
that run), then its output as the assistant's answer — marked as partial when the run did not succeed
(interrupted, cancelled, out of budget, failed). Earlier runs without any output add nothing (their
question was never answered). Then comes this run's own input. The most recent ``MAX_RUNS`` runs count,
each answer cut at ``MAX_ANSWER_CHARS``, so a long thread does not outgrow the context window.

The **workspace** is *copied*, not shared: the run starts with a copy of the files of the thread's latest
earlier run that counts, as that run left them (it has ended or stopped at a step boundary before this run
starts). Each run keeps owning its own workspace, so downloading, forking and retention of a run stay
per run, and a later run's edits never change what an earlier run produced.

Both happen in one durable step (``thread/context``): the files are written with it and the messages are
its recorded value, so a resumed or forked run replays them exactly.
"""

from __future__ import annotations

from typing import Any

from conclave.core.context import RunContext
from conclave.schema import ChatMessageIn, Run, RunStatus

__all__ = ["MAX_ANSWER_CHARS", "MAX_RUNS", "STEP_KEY", "conversation", "enter_thread"]

STEP_KEY = "thread/context"
MAX_RUNS = 20
MAX_ANSWER_CHARS = 8000


def _own_messages(run: Run) -> list[ChatMessageIn]:
    spec_input = run.spec.input
    if isinstance(spec_input, str):
        return [ChatMessageIn(role="user", content=spec_input)]
    return [m for m in spec_input if m.role != "system"]


def conversation(earlier: list[Run]) -> list[ChatMessageIn]:
    """The messages the earlier runs of a thread contribute, oldest first (see the module docstring)."""
    out: list[ChatMessageIn] = []
    for run in earlier[-MAX_RUNS:]:
        answer = (run.output or "").strip()
        if not answer:
            continue
        if len(answer) > MAX_ANSWER_CHARS:
            answer = answer[:MAX_ANSWER_CHARS] + " […]"
        if run.status is not RunStatus.SUCCEEDED:
            how = "was interrupted" if run.status is RunStatus.PAUSED else f"ended {run.status.value}"
            answer += f"\n\n(a partial answer: that run {how} before it finished)"
        out += _own_messages(run)
        out.append(ChatMessageIn(role="assistant", content=answer))
    return out


async def enter_thread(ctx: RunContext) -> None:
    """Give ``ctx`` its thread's conversation (in ``ctx.spec.input``) and a copy of its latest workspace,
    once per run (a durable step); a no-op for runs outside threads."""
    if not ctx.spec.thread_id and not ctx.committed(STEP_KEY):
        return

    async def load() -> dict[str, Any]:
        earlier = await ctx.store.thread_history(ctx.run_id)
        seed = earlier[-1].id if earlier else None
        copied = 0
        if seed is not None:
            for path, data in sorted((await ctx.store.load_workspace(seed)).items()):
                ctx.workspace.write(path, data)
                copied += 1
        history = conversation(earlier)
        await ctx.emit(
            "log",
            {
                "message": f"thread {ctx.spec.thread_id}: {len(history) // 2} earlier exchanges, "
                f"{copied} files from {seed or 'no earlier run'}",
                "thread_id": ctx.spec.thread_id,
                "workspace_from": seed,
                "earlier_runs": [r.id for r in earlier],
            },
        )
        return {"messages": [m.model_dump() for m in history], "workspace_from": seed}

    value: dict[str, Any] = await ctx.step(STEP_KEY, load)
    history = [ChatMessageIn.model_validate(m) for m in value["messages"]]
    if not history:
        return
    own = ctx.spec.input
    mine = [ChatMessageIn(role="user", content=own)] if isinstance(own, str) else list(own)
    ctx.spec = ctx.spec.model_copy(update={"input": history + mine})
