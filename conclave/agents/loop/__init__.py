"""The ``agent`` run kind: a tool-calling loop on the OpenAI chat format.

Durability. Every model turn and every tool call is one durable step with a key fixed by its
position (``turn/{i}/model``, ``turn/{i}/tool/{j}``, ``turn/{i}/compact``, each behind the agent's
step-key prefix, empty for the ``agent`` kind), and the conversation
is rebuilt from the recorded step values alone. A resumed run therefore replays its history
without calling the model or any tool again and continues from the first step that did not
commit: a tool call that committed is never repeated, and each call carries an idempotency key
(run id + step key + call index) for tools whose side effects live outside the workspace.
Anything that varies between attempts (the budget block, time) is computed inside a step and
recorded with it, so control flow on replay is identical.

Stopping. ``end_turn`` (the model answered), ``max_steps`` (succeeded when the model said something,
and the detail says the output is its last message, a partial answer; failed when it never did),
``budget_exhausted`` (the ledger refused the next call; the best partial answer is returned),
``cancelled``, ``error`` (the model failed), ``stuck`` (the same call with the same result, or the same
error, repeated ``stuck_repeats`` times: the run *failed* — it stopped without an answer, and a person
should look at it). Malformed tool arguments are answered with a tool message that names the
validation error, so the model can correct itself.

People in the loop (``conclave.agents.approvals``). A call of a tool the task's ``approval`` policy
marks ``always`` — and every ``ask_human`` call — needs a person's decision before its step runs: the
loop asks the context for the recorded one and, without it, the run leaves at this step boundary to
wait (its sibling calls finish and commit first). The resumed run replays every committed step and
finds the decision recorded: the call runs (with a person's edited arguments, if they edited it) or the
model reads why it did not. Either way the call's step commits as usual, so an approved call runs once.
A budget of the tenant or the API key running out pauses the run (it is re-raised to the runner)
instead of ending it.

Budget awareness (``conclave.budgets.awareness``): each model turn sees a ``<budget>`` block after
the latest tool results; at CRITICAL the turn is made without tools, asking for the best final
answer, so the run ends with an answer instead of being cut off.

Context. When the next request nears the model's context window, the oldest tool results are moved
into ``logs/tool_results/`` in the workspace and replaced in the context by a pointer and an
extract (``conclave.agents.summarize``).

Several agents in one run. ``run_agent`` runs the ``agent`` kind: one agent whose task, system
prompt and tools come from the run's spec. Workflows that need several agents in one run (the
``research`` kind: librarian rounds, one writer per section, in parallel) describe each with an
``AgentSetup`` (name, system prompt, task, Meter, step-key prefix) and call ``run_agent_with``.
Distinct prefixes keep their steps apart, so each replays on its own after a crash.

Modules: ``options`` (the options, ``AgentSetup``, the answer tool), ``conversation`` (what the model
sees), ``agent`` (the turn loop), ``calls`` (tool-call steps), ``compaction``, ``endings``.
"""

from __future__ import annotations

import contextlib

from conclave.agents.approvals import check_policy
from conclave.core.context import RunContext
from conclave.core.kinds import Outcome, RunKind
from conclave.schema import RunStatus, StopReason, TaskSpec
from conclave.tools.base import Tool
from conclave.tools.registry import ToolRegistry, default_registry

from .agent import Agent
from .options import ANSWER_TOOL, AgentOptions, AgentSetup

__all__ = ["ANSWER_TOOL", "AgentOptions", "AgentSetup", "KIND", "check", "run", "run_agent", "run_agent_with"]


def check(spec: TaskSpec) -> None:
    """Submission-time checks beyond the options model: the tools named exist, and so does every tool
    the approval policy names."""
    default_registry().check(spec.tools)
    check_policy(spec, default_registry())


async def run_agent(ctx: RunContext, *, registry: ToolRegistry | None = None) -> Outcome:
    """Run the agent loop for ``ctx`` with the tools of ``registry`` (the process default if None)."""
    opts = AgentOptions.model_validate(ctx.spec.options)
    reg = registry or default_registry()
    max_steps = ctx.spec.max_steps or opts.max_steps
    async with contextlib.AsyncExitStack() as stack:
        try:
            tools = await stack.enter_async_context(reg.open(ctx.spec.tools))
        except Exception as e:  # an MCP server that does not start, an unknown tool
            detail = f"could not open the tools: {e}"
            return Outcome(status=RunStatus.FAILED, stop_reason=StopReason.ERROR, detail=detail)
        return await Agent(ctx, opts, tools, reg).run(max_steps)
    raise AssertionError("unreachable")  # pragma: no cover


async def run_agent_with(
    ctx: RunContext,
    setup: AgentSetup,
    *,
    opts: AgentOptions,
    tools: dict[str, Tool],
    registry: ToolRegistry | None = None,
    max_steps: int | None = None,
) -> Outcome:
    """Run one agent of a multi-agent workflow: its own task, prompt, tools (already open), meter
    and step-key prefix. Returns how it stopped; a budget stop is an outcome, not an exception."""
    if not setup.prefix and setup.name != "agent":
        raise ValueError("an agent other than the run's main agent needs a step-key prefix")
    agent = Agent(ctx, opts, tools, registry or default_registry(), setup)
    return await agent.run(max_steps or opts.max_steps)


async def run(ctx: RunContext) -> Outcome:
    return await run_agent(ctx)


KIND = RunKind(
    name="agent",
    run=run,
    options=AgentOptions,
    description="A tool-calling agent loop over the run's workspace, budget-aware and resumable.",
    check=check,
)
