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
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from conclave.agents.approvals import approval_mode, check_policy, decided_arguments, refused_result
from conclave.agents.meter import prompt_estimate
from conclave.budgets.awareness import Level, budget_view
from conclave.core import telemetry
from conclave.core.context import Metered, RunContext
from conclave.core.kinds import Outcome, RunKind
from conclave.core.ledger import BudgetExhausted, limit_label
from conclave.core.steering import is_outer_scope
from conclave.core.store_steer import ApprovalRequest, approval_id
from conclave.schema import Approval, ApprovalStatus, ChatMessageIn, RunStatus, StopReason, TaskSpec
from conclave.schema.chat import (
    ChatMessage,
    ChatRequest,
    EngineError,
    FunctionCall,
    FunctionDef,
    ModelNotFound,
    ToolCall,
    ToolDef,
)
from conclave.tools.ask_human import ASK_HUMAN
from conclave.tools.base import (
    Tool,
    ToolArgumentError,
    ToolContext,
    ToolResult,
    clean_schema,
    execute,
    format_validation_error,
)
from conclave.tools.registry import ToolRegistry, default_registry

from .summarize import pointer

__all__ = ["ANSWER_TOOL", "AgentOptions", "AgentSetup", "KIND", "check", "run", "run_agent", "run_agent_with"]

#: With ``tool_choice="required"`` the model ends by calling this tool (small models cannot be
#: trusted to choose between text and a call on their own).
ANSWER_TOOL = "final_answer"

DEFAULT_SYSTEM = (
    "You are an agent that completes the user's task with the tools you have. Your workspace is a "
    "directory of files that persists for the whole task: keep notes and results there. Call tools "
    "when you need them; call several at once when they do not depend on each other. "
)


class AgentOptions(BaseModel):
    """Options of the ``agent`` kind (``TaskSpec.options``)."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(default=512, ge=1, le=100_000, description="Completion tokens per model turn.")
    temperature: float | None = Field(default=None, ge=0, le=2)
    seed: int | None = None
    max_steps: int = Field(default=20, ge=1, le=10_000, description="Model turns; TaskSpec.max_steps wins.")
    tool_choice: Literal["auto", "required"] = Field(
        default="auto",
        description="'required' makes every turn a tool call and adds a final_answer tool to end with; "
        "use it for small models.",
    )
    min_tool_turns: int = Field(
        default=0,
        ge=0,
        le=1_000,
        description="With tool_choice 'required', offer final_answer only after this many turns; small models "
        "otherwise tend to answer before doing anything.",
    )
    parallel_tool_calls: bool = True
    max_parallel: int = Field(default=8, ge=1, le=64, description="Tool calls of one turn run at once.")
    stuck_repeats: int = Field(default=3, ge=2, le=100, description="Repeats that count as stuck.")
    compact_at: float = Field(default=0.75, gt=0.1, le=1.0, description="Fraction of the context window.")
    keep_recent_turns: int = Field(default=1, ge=0, le=100, description="Turns whose results are never compacted.")
    budget_awareness: bool = True
    layout: bool = Field(default=False, description="Start the workspace with the FS-Researcher layout.")
    answer_ensemble: str | dict[str, Any] | None = Field(
        default=None, description="Give the final answer with this ensemble (a name or a config) over the conversation."
    )


@dataclass
class AgentSetup:
    """Who an agent is inside a run: what it is told, what it is charged to, where its steps live.

    The ``agent`` kind builds one from the spec (``AgentSetup.from_spec``); a workflow builds one per
    agent. ``prefix`` goes in front of every step key (``research/build/r0/``), so agents of one run
    never collide and each one's history replays on its own. ``reminder`` is appended to the
    latest user turn at every step: a short restatement of the role, which small models need to stay
    on task once tool results pile up.
    """

    task: str | list[ChatMessageIn]
    meter: Metered
    name: str = "agent"
    system: str | None = None  # the role's prompt; DEFAULT_SYSTEM when None
    user_system: str | None = None  # the user's own system prompt, appended
    prefix: str = ""
    reminder: str | None = None  # "{turn}" is replaced by the turn number
    model: str | None = None  # the run's model when None
    set_partial: bool = True  # report its texts as the run's partial output

    @classmethod
    def from_spec(cls, ctx: RunContext) -> AgentSetup:
        return cls(task=ctx.spec.input, meter=ctx.meter, user_system=ctx.spec.system)


def check(spec: TaskSpec) -> None:
    """Submission-time checks beyond the options model: the tools named exist, and so does every tool
    the approval policy names."""
    default_registry().check(spec.tools)
    check_policy(spec, default_registry())


class _AnswerArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    answer: str = Field(description="Your final answer to the task.")


def _answer_def() -> ToolDef:
    return ToolDef(
        function=FunctionDef(
            name=ANSWER_TOOL,
            description="Finish the task: give your final answer.",
            parameters=clean_schema(_AnswerArgs.model_json_schema()),
        )
    )


def _canonical_args(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), sort_keys=True)
    except (ValueError, TypeError):
        return arguments.strip()


class _Stop(Exception):
    """Ends the loop with a reason; raised from anywhere inside it."""

    def __init__(
        self, reason: StopReason, status: RunStatus, detail: str | None = None, output: str | None = None
    ) -> None:
        super().__init__(detail or reason.value)
        self.reason, self.status, self.detail, self.output = reason, status, detail, output


@dataclass
class _State:
    turns: list[dict[str, Any]] = field(default_factory=list)  # recorded model turns (+ "results")
    compacted: dict[str, str] = field(default_factory=dict)  # tool_call_id -> pointer text
    signatures: Counter[str] = field(default_factory=Counter)
    error_streak: list[str] = field(default_factory=list)
    tool_counts: Counter[str] = field(default_factory=Counter)
    level: str | None = None


class _Agent:
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
        self.s = _State()
        self.answer_tool = opts.tool_choice == "required"
        self.defs = [t.definition() for t in tools.values()]
        self.sem = asyncio.Semaphore(opts.max_parallel)
        self.groups = registry.groups()

    # -- the conversation ---------------------------------------------------------------------
    def _system(self) -> str:
        text = self.setup.system or DEFAULT_SYSTEM
        if self.answer_tool:
            text += f"When the task is done, call {ANSWER_TOOL} with your answer."
        else:
            text += "When the task is done, reply with your final answer as plain text, without a tool call."
        if self.setup.user_system:
            text += "\n\n" + self.setup.user_system
        return text

    def _messages(self, budget_text: str | None = None, final: bool = False) -> list[ChatMessage]:
        task = self.setup.task
        msgs = [ChatMessage(role="system", content=self._system())]
        if isinstance(task, str):
            msgs.append(ChatMessage(role="user", content=task))
        else:
            msgs += [ChatMessage(role=m.role, content=m.content) for m in task]
        for turn in self.s.turns:
            calls = [
                ToolCall(id=c["id"], function=FunctionCall(name=c["name"], arguments=c["arguments"]))
                for c in turn["tool_calls"]
            ]
            msgs.append(ChatMessage(role="assistant", content=turn["content"], tool_calls=calls or None))
            for r in turn.get("results", []):
                content = self.s.compacted.get(r["id"], r["content"])
                msgs.append(ChatMessage(role="tool", tool_call_id=r["id"], name=r["name"], content=content))
        tail = []
        if budget_text:
            tail.append(budget_text)
        if final:
            tail.append("Do not call any tool now. Reply with your best final answer to the task, as plain text.")
        if self.setup.reminder:
            tail.append(self.setup.reminder.replace("{turn}", str(len(self.s.turns))))
        if tail:
            msgs.append(ChatMessage(role="user", content="\n".join(tail)))
        return msgs

    def _tool_defs(self) -> list[ToolDef]:
        if self.answer_tool and len(self.s.turns) >= self.opts.min_tool_turns:
            return [*self.defs, _answer_def()]
        return list(self.defs)

    def _request(self, messages: list[ChatMessage], *, final: bool) -> ChatRequest:
        defs = self._tool_defs()
        with_tools = bool(defs) and not final
        tool_choice: Any = None
        if with_tools:
            tool_choice = "required" if self.opts.tool_choice == "required" else "auto"
        return ChatRequest(
            model=self.model,
            messages=messages,
            max_tokens=self.opts.max_tokens,
            temperature=self.opts.temperature,
            seed=self.opts.seed,
            tools=defs if with_tools else None,
            tool_choice=tool_choice,
            parallel_tool_calls=self.opts.parallel_tool_calls if with_tools else None,
        )

    # -- budget -----------------------------------------------------------------------------
    async def _budget(self) -> tuple[str | None, str | None]:
        if not self.opts.budget_awareness:
            return None, None
        ledger = self.ctx.ledger
        if not ledger.has_caps and ledger.wall_cap_s is None:
            return None, None
        snap = await ledger.snapshot()
        view = budget_view(
            snap,
            scope=self.meter.scope,
            wall_cap_s=ledger.wall_cap_s,
            wall_used_s=self.ctx.elapsed() if ledger.wall_cap_s else None,
        )
        if view is None:
            return None, None
        return view.render(), view.level.value

    # -- steps --------------------------------------------------------------------------------
    async def _model_turn(self, i: int) -> dict[str, Any]:
        budget_text, level = await self._budget()
        final = level == Level.CRITICAL.value
        request = self._request(self._messages(budget_text, final=final), final=final)
        response = await self.meter.chat(request, model=self.model)
        choice = response.choices[0]
        msg = choice.message
        calls = (
            []
            if final
            else [
                {"id": c.id, "name": c.function.name, "arguments": c.function.arguments} for c in msg.tool_calls or []
            ]
        )
        usage = response.usage.model_dump()
        await self.ctx.emit(
            "model.call",
            {
                "turn": i,
                "model": self.model,
                "usage": usage,
                "finish_reason": choice.finish_reason,
                "final": final,
                **self._who(),
            },
        )
        await self.ctx.emit(
            "agent.message",
            {
                "turn": i,
                "content": (msg.content or "")[:4000],
                "tool_calls": [{"name": c["name"], "arguments": c["arguments"][:1000]} for c in calls],
                "budget_level": level,
                **self._who(),
            },
        )
        return {
            "content": msg.content,
            "tool_calls": calls,
            "finish_reason": choice.finish_reason,
            "final": final,
            "level": level,
            "budget": budget_text,
            "usage": usage,
        }

    async def _decision(self, key: str, t: Tool, arguments: str) -> Approval | None:
        """The recorded decision on a call that needs a person; without one the run leaves to wait for
        it (``WaitForPeople``). None when the call needs no one, or its arguments are invalid (it fails
        validation without bothering anyone)."""
        ctx = self.ctx
        if self.ctx.committed(key) or approval_mode(ctx.spec.approval, t, self.groups) != "always":
            return None
        try:
            t.parse(arguments)
        except ToolArgumentError:
            return None
        aid = approval_id(ctx.run_id, key)
        got = await ctx.decision(aid)
        if got is not None:
            return got
        raw = json.loads(arguments) if arguments and arguments.strip() else {}
        raise ctx.wait_for(
            ApprovalRequest(
                id=aid,
                tool=t.name,
                step_key=key,
                arguments=raw,
                kind="question" if t.name == ASK_HUMAN else "tool",
                reserve=self.meter.tool_amounts(t.name),
                parameters=t.parameters(),
                timeout_s=ctx.spec.approval_timeout_s,
                on_timeout=ctx.spec.approval_on_timeout,
            )
        )

    async def _tool_step(self, i: int, j: int, call: dict[str, Any]) -> dict[str, Any]:
        ctx = self.ctx
        name, arguments = call["name"], call["arguments"]
        step_key = f"{self.p}turn/{i}"
        key = f"{self.p}turn/{i}/tool/{j}"
        t = self.tools.get(name)
        decision = await self._decision(key, t, arguments) if t is not None else None
        tctx = ToolContext(
            workspace=ctx.workspace,
            run_id=ctx.run_id,
            step_key=step_key,
            call_index=j,
            settings=self.registry.settings,
        )
        if decision is not None:
            arguments = decided_arguments(decision, arguments)
            if decision.status is ApprovalStatus.APPROVED and decision.kind == "question":
                tctx.answer = decision.answer or decision.reason or ""

        async def body() -> dict[str, Any]:
            await ctx.emit(
                "tool.call",
                {
                    "turn": i,
                    "index": j,
                    "id": call["id"],
                    "name": name,
                    "arguments": arguments[:4000],
                    "idempotency_key": tctx.idempotency_key,
                    **({"approval": {"id": decision.id, "status": decision.status.value}} if decision else {}),
                    **self._who(),
                },
            )
            refused = refused_result(decision) if decision is not None else None
            if name == ANSWER_TOOL and self.answer_tool:
                result = self._answer_result(arguments)
            elif t is None:
                known = ", ".join(sorted(self.tools) + ([ANSWER_TOOL] if self.answer_tool else []))
                result = ToolResult(f"error: unknown tool {name!r}; available tools: {known}", is_error=True)
            elif refused is not None:
                result = refused
            else:
                try:
                    result = await execute(t, arguments, tctx, runner=lambda fn: self.meter.tool(name, fn))
                except BudgetExhausted as e:
                    if not e.limit.startswith("tool:") or is_outer_scope(e.scope):
                        raise
                    result = ToolResult(
                        f"error: no budget left for this call ({limit_label(e.limit)} is used up); "
                        f"use other tools or give your answer",
                        is_error=True,
                        data={"error": "budget"},
                    )
            await ctx.emit(
                "tool.result",
                {
                    "turn": i,
                    "index": j,
                    "id": call["id"],
                    "name": name,
                    "is_error": result.is_error,
                    "content": result.content[:4000],
                    "data": result.data or {},
                    **self._who(),
                },
            )
            return {
                "id": call["id"],
                "name": name,
                "content": result.content,
                "is_error": result.is_error,
                "data": result.data or {},
            }

        async with self.sem:
            value: dict[str, Any] = await ctx.step(key, body)
            return value

    def _answer_result(self, arguments: str) -> ToolResult:
        try:
            args = _AnswerArgs.model_validate_json(arguments or "{}")
        except ValidationError as e:
            return ToolResult(format_validation_error(e, ANSWER_TOOL), is_error=True, data={"error": "arguments"})
        return ToolResult("answer recorded", data={"answer": args.answer})

    async def _compact(self, i: int) -> None:
        """Move old tool results into the workspace when the next request nears the window."""
        window = self.meter.router.context_window(self.model)
        if not window:
            return
        limit = int(window * self.opts.compact_at)

        def need() -> int:
            req = self._request(self._messages(), final=False)
            return prompt_estimate(req) + self.opts.max_tokens

        if need() <= limit:
            return
        keep_from = max(0, len(self.s.turns) - self.opts.keep_recent_turns)
        candidates = [
            (t, r)
            for t, turn in enumerate(self.s.turns[:keep_from])
            for r in turn.get("results", [])
            if r["id"] not in self.s.compacted and len(r["content"]) > 200
        ]
        if not candidates:
            return
        chosen: list[tuple[int, dict[str, Any]]] = []
        trial = dict(self.s.compacted)
        for t, r in candidates:
            trial[r["id"]] = pointer(self._archive_path(t, r), r["content"], tool=r["name"])
            chosen.append((t, r))
            saved, self.s.compacted = self.s.compacted, trial
            fits = need() <= limit
            self.s.compacted = saved
            if fits:
                break

        async def body() -> dict[str, str]:
            out: dict[str, str] = {}
            for t, r in chosen:
                path = self._archive_path(t, r)
                self.ctx.workspace.write(path, r["content"])
                out[r["id"]] = pointer(path, r["content"], tool=r["name"])
            await self.ctx.emit(
                "log", {"turn": i, "message": f"moved {len(out)} old tool results to logs/", **self._who()}
            )
            return out

        done: dict[str, str] = await self.ctx.step(f"{self.p}turn/{i}/compact", body)
        self.s.compacted.update(done)

    def _archive_path(self, t: int, r: dict[str, Any]) -> str:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in r["name"])[:40]
        who = "" if not self.p else "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in self.p.strip("/")) + "-"
        return f"logs/tool_results/{who}turn-{t:03d}-{safe}-{r['id'][-8:]}.md"

    def _who(self) -> dict[str, str]:
        """The agent's name in its events, when the run has several agents."""
        return {"agent": self.setup.name} if self.p else {}

    # -- the loop -----------------------------------------------------------------------------
    def _partial(self) -> str | None:
        for turn in reversed(self.s.turns):
            if turn["content"] and turn["content"].strip():
                return str(turn["content"])
        return None

    def _check_stuck(self, results: list[dict[str, Any]], calls: list[dict[str, Any]]) -> None:
        n = self.opts.stuck_repeats
        for call, r in zip(calls, results, strict=True):
            sig = f"{call['name']}\x00{_canonical_args(call['arguments'])}\x00{r['content']}"
            self.s.signatures[sig] += 1
            if self.s.signatures[sig] >= n:
                raise _Stop(
                    StopReason.STUCK,
                    RunStatus.FAILED,
                    f"the call {call['name']}({call['arguments'][:200]}) returned the same result {n} times",
                )
            if r["is_error"]:
                self.s.error_streak.append(r["content"])
            else:
                self.s.error_streak.clear()
            tail = self.s.error_streak[-n:]
            if len(tail) == n and len(set(tail)) == 1:
                raise _Stop(StopReason.STUCK, RunStatus.FAILED, f"the same error {n} times in a row: {tail[0][:300]}")

    async def run(self, max_steps: int) -> Outcome:
        """The loop, inside an ``invoke_agent {name}`` span (model and tool spans nest under it)."""
        with telemetry.agent_span(
            self.setup.name, agent_id=f"{self.ctx.run_id}/{self.p or 'main'}", model=self.model
        ) as span:
            outcome = await self._run(max_steps)
            span.set_attribute("conclave.agent.stop_reason", outcome.stop_reason.value)
            return outcome

    async def _run(self, max_steps: int) -> Outcome:
        ctx = self.ctx
        if self.opts.layout:
            await ctx.step(f"{self.p}layout", self._layout)
        try:
            for i in range(max_steps):
                if ctx.cancel_requested.is_set():
                    raise _Stop(StopReason.CANCELLED, RunStatus.CANCELLED, "cancel requested")
                await self._compact(i)
                try:
                    turn: dict[str, Any] = await ctx.step(
                        f"{self.p}turn/{i}/model", functools.partial(self._model_turn, i)
                    )
                except (EngineError, ModelNotFound) as e:
                    raise _Stop(StopReason.ERROR, RunStatus.FAILED, f"model call failed: {e}") from e
                self.s.turns.append(turn)
                self.s.level = turn.get("level")
                if turn["content"] and self.setup.set_partial:
                    ctx.partial_output = turn["content"]
                calls = turn["tool_calls"]
                if turn["final"] or not calls:
                    stop = StopReason.LENGTH if turn["finish_reason"] == "length" else StopReason.END_TURN
                    detail = "answered at CRITICAL budget level" if turn["final"] else None
                    raise _Stop(stop, RunStatus.SUCCEEDED, detail, turn["content"] or self._partial())
                results = await asyncio.gather(
                    *(self._tool_step(i, j, c) for j, c in enumerate(calls)), return_exceptions=True
                )
                for r in results:  # every sibling has finished (and committed) before we stop
                    if isinstance(r, BaseException):
                        raise r
                ok: list[dict[str, Any]] = [r for r in results if isinstance(r, dict)]
                turn["results"] = ok
                for c in calls:
                    self.s.tool_counts[c["name"]] += 1
                for c, r in zip(calls, ok, strict=True):
                    if c["name"] == ANSWER_TOOL and self.answer_tool and not r["is_error"]:
                        answer = str(r["data"].get("answer", ""))
                        if self.setup.set_partial:
                            ctx.partial_output = answer
                        raise _Stop(StopReason.END_TURN, RunStatus.SUCCEEDED, None, answer)
                self._check_stuck(ok, calls)
            raise self._max_steps(max_steps)
        except _Stop as s:
            return await self._finish(s)
        except BudgetExhausted as e:
            if is_outer_scope(e.scope):
                raise  # the tenant's (or key's) budget: the runner pauses the run
            return await self._finish(
                _Stop(StopReason.BUDGET_EXHAUSTED, RunStatus.BUDGET_EXHAUSTED, str(e), self._partial()),
                exhausted=limit_label(e.limit),
            )

    def _max_steps(self, max_steps: int) -> _Stop:
        partial = self._partial()
        if partial is None:
            detail = f"stopped after {max_steps} model turns without an answer"
            return _Stop(StopReason.MAX_STEPS, RunStatus.FAILED, detail)
        detail = (
            f"stopped after {max_steps} model turns; the output is the agent's last message, a partial answer, "
            "not a final one"
        )
        return _Stop(StopReason.MAX_STEPS, RunStatus.SUCCEEDED, detail, partial)

    async def _layout(self) -> bool:
        self.ctx.workspace.init_layout()
        return True

    async def _ensemble_answer(self, s: _Stop) -> _Stop:
        """With ``answer_ensemble``, the final answer comes from that ensemble over the whole
        conversation (one durable step, metered in the ``answer`` scope); the agent's own answer
        stays when the ensemble cannot run within budget."""
        ens = self.opts.answer_ensemble
        if ens is None or s.reason is not StopReason.END_TURN:
            return s
        from conclave.agents.ensemble import answer_with_ensemble

        meter = self.ctx.scoped(f"{self.setup.name}-answer", stage="answer", agent=f"{self.setup.name}-ensemble")

        async def answer() -> str:
            return await answer_with_ensemble(
                ens, self._messages(final=True), meter, default_model=self.model, max_tokens=self.opts.max_tokens
            )

        try:
            text = await self.ctx.step(f"{self.p}answer/ensemble", answer)
        except (BudgetExhausted, EngineError) as e:
            if isinstance(e, BudgetExhausted) and is_outer_scope(e.scope):
                raise
            detail = f"kept the agent's own answer: the answer ensemble could not run ({e})"
            return _Stop(s.reason, s.status, detail, s.output)
        return _Stop(s.reason, s.status, s.detail or "answered by the answer ensemble", text or s.output)

    async def _finish(self, s: _Stop, exhausted: str | None = None) -> Outcome:
        ctx = self.ctx
        s = await self._ensemble_answer(s)
        output = s.output if s.output is not None else self._partial()
        if output is not None and self.setup.set_partial:
            ctx.partial_output = output
        result = {
            "steps": len(self.s.turns),
            "tool_calls": sum(self.s.tool_counts.values()),
            "tools": dict(self.s.tool_counts),
            "budget_level": self.s.level,
            "exhausted_limit": exhausted,
            "compacted_results": len(self.s.compacted),
            "turns": [
                {
                    "content": (t["content"] or "")[:2000],
                    "final": t["final"],
                    "tool_calls": [
                        {"name": c["name"], "arguments": c["arguments"][:500], "is_error": r["is_error"]}
                        for c, r in zip(t["tool_calls"], t.get("results", []), strict=False)
                    ],
                }
                for t in self.s.turns
            ],
        }

        async def stopped() -> bool:
            await ctx.emit(
                "agent.stopped",
                {
                    "stop_reason": s.reason.value,
                    "status": s.status.value,
                    "detail": s.detail,
                    "steps": result["steps"],
                    "tool_calls": result["tool_calls"],
                    **self._who(),
                },
            )
            return True

        if s.reason is not StopReason.CANCELLED:  # a cancelled run may not be able to commit any more
            await ctx.step(f"{self.p}stopped", stopped)
        return Outcome(output=output, result=result, status=s.status, stop_reason=s.reason, detail=s.detail)


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
        return await _Agent(ctx, opts, tools, reg).run(max_steps)
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
    agent = _Agent(ctx, opts, tools, registry or default_registry(), setup)
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
