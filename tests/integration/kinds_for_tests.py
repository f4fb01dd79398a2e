"""Run kinds used by the controller tests (registered through ``Settings.kinds``).

``steps`` runs N durable steps; each execution of a step body increments a counter in Redis, so a
test can count how often each step really ran. ``crash`` kills its own worker process.
"""

from __future__ import annotations

import asyncio
import os
import signal

from pydantic import BaseModel, ConfigDict, Field

from conclave.core.context import RunContext
from conclave.core.kinds import Outcome, RunKind
from conclave.schema.chat import ChatMessage, ChatRequest


class StepsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = Field(default=5, ge=1)
    sleep: float = Field(default=0.0, ge=0)
    block_step: int | None = Field(default=None, description="This step sleeps for `block_seconds`.")
    block_seconds: float = 0.0
    model_calls: bool = Field(default=False, description="Each step makes one metered call to the sim model.")


async def run_steps(ctx: RunContext) -> Outcome:
    opts = StepsOptions.model_validate(ctx.spec.options)
    total = 0
    for i in range(opts.n):

        async def body(i: int = i) -> int:
            await ctx.store.redis.incr(f"{ctx.store.prefix}:test:count:{ctx.run_id}:{i}")
            await ctx.emit("log", {"step": i})
            ctx.workspace.write(f"steps/{i}.txt", f"step {i}")
            if opts.model_calls:
                await ctx.meter.chat(
                    ChatRequest(messages=[ChatMessage(role="user", content=f"step {i} of the run")], max_tokens=8),
                    model=ctx.model,
                )
            delay = opts.block_seconds if opts.block_step == i else opts.sleep
            await asyncio.sleep(delay)
            return i * i

        total += await ctx.step(f"s/{i}", body)
        ctx.partial_output = f"{i + 1} steps"
    return Outcome(output=f"sum={total}", result={"steps": opts.n})


async def run_crash(ctx: RunContext) -> Outcome:
    await ctx.store.redis.incr(f"{ctx.store.prefix}:test:crashes:{ctx.run_id}")
    os.kill(os.getpid(), signal.SIGKILL)
    await asyncio.sleep(10)
    return Outcome(output="unreachable")


async def run_fail(ctx: RunContext) -> Outcome:
    raise ValueError("the body failed on purpose")


STEPS = RunKind(name="steps", run=run_steps, options=StepsOptions)
CRASH = RunKind(name="crash", run=run_crash)
FAIL = RunKind(name="fail", run=run_fail)
KIND = STEPS
