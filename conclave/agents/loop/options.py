"""What an agent is given: the ``agent`` kind's options, who the agent is in its run, the answer tool."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from conclave.core.context import Metered, RunContext
from conclave.schema import ChatMessageIn
from conclave.schema.chat import FunctionDef, ToolDef
from conclave.tools.base import Tool, clean_schema

__all__ = [
    "ANSWER_TOOL",
    "DEFAULT_SYSTEM",
    "AgentOptions",
    "AgentSetup",
    "AnswerArgs",
    "answer_def",
    "tool_definition",
]

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


class AnswerArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    answer: str = Field(description="Your final answer to the task.")


@functools.cache
def answer_def() -> ToolDef:
    """The ``final_answer`` tool's definition (built once per process; never mutated)."""
    return ToolDef(
        function=FunctionDef(
            name=ANSWER_TOOL,
            description="Finish the task: give your final answer.",
            parameters=clean_schema(AnswerArgs.model_json_schema()),
        )
    )


#: Tool definitions by (arguments model, name, description): building a JSON schema costs ~0.1 ms
#: of pydantic work per tool and run, and it depends on nothing else. Bounded: cleared when full.
_DEFINITIONS: dict[tuple[type[BaseModel], str, str], ToolDef] = {}
_MAX_DEFINITIONS = 1024


def tool_definition(t: Tool) -> ToolDef:
    """``t.definition()``, cached per process for tools whose schema comes from their ``Args`` model
    alone (``parameters``/``definition`` not overridden, as MCP tools do); never mutated."""
    kind = type(t)
    if kind.parameters is not Tool.parameters or kind.definition is not Tool.definition:
        return t.definition()
    key = (t.Args, t.name, t.description)
    got = _DEFINITIONS.get(key)
    if got is None:
        if len(_DEFINITIONS) >= _MAX_DEFINITIONS:
            _DEFINITIONS.clear()
        got = _DEFINITIONS[key] = t.definition()
    return got
