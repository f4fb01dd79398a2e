"""``ask_human``: the agent asks a person a question and the run waits for the answer.

The call always waits: the agent loop turns it into an approval of kind ``question`` (status ``waiting``,
no worker held), and a person's ``approve`` with an ``answer`` (or a ``reason``) is what the model reads
back. A ``deny`` tells the model the person declined to answer; a timeout, that no one answered.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .base import Tool, ToolContext, ToolError

__all__ = ["ASK_HUMAN", "AskHuman", "AskHumanArgs"]

ASK_HUMAN = "ask_human"


class AskHumanArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=4000, description="What you need a person to tell you.")


class AskHuman(Tool):
    name = ASK_HUMAN
    description = (
        "Ask a person a question when you cannot go on without them (a missing fact, a choice only they can "
        "make). The task waits until they answer; their answer is this call's result."
    )
    Args = AskHumanArgs

    async def run(self, args: AskHumanArgs, ctx: ToolContext) -> str:
        if ctx.answer is None:
            raise ToolError("ask_human has no answer: it runs only once a person has answered the question")
        return ctx.answer
