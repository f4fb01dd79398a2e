"""The ``chat`` run kind: one model call, metered, as one durable step."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from conclave.core.context import RunContext
from conclave.core.kinds import Outcome, RunKind
from conclave.schema import StopReason
from conclave.schema.chat import ChatMessage, ChatRequest

__all__ = ["ChatOptions", "KIND", "messages_of"]


class ChatOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_tokens: int | None = Field(default=None, ge=1, le=100_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    seed: int | None = None


def messages_of(ctx: RunContext) -> list[ChatMessage]:
    spec = ctx.spec
    msgs: list[ChatMessage] = []
    if spec.system:
        msgs.append(ChatMessage(role="system", content=spec.system))
    if isinstance(spec.input, str):
        msgs.append(ChatMessage(role="user", content=spec.input))
    else:
        msgs += [ChatMessage(role=m.role, content=m.content) for m in spec.input]
    return msgs


async def run(ctx: RunContext) -> Outcome:
    opts = ChatOptions.model_validate(ctx.spec.options)
    request = ChatRequest(
        model=ctx.model,
        messages=messages_of(ctx),
        max_tokens=opts.max_tokens,
        temperature=opts.temperature,
        seed=opts.seed,
    )

    async def call() -> dict[str, object]:
        response = await ctx.meter.chat(request, model=ctx.model)
        choice = response.choices[0]
        await ctx.emit(
            "model.call",
            {"model": ctx.model, "usage": response.usage.model_dump(), "finish_reason": choice.finish_reason},
        )
        return {"content": choice.message.content or "", "finish_reason": choice.finish_reason}

    out = await ctx.step("chat", call)
    stop = StopReason.LENGTH if out["finish_reason"] == "length" else StopReason.END_TURN
    return Outcome(output=str(out["content"]), stop_reason=stop)


KIND = RunKind(name="chat", run=run, options=ChatOptions, description="One model call.")
