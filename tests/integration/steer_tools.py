"""A tool with a side effect outside the run, for the steering tests, and the kind that makes worker
processes load it.

``effect`` stands for a payment: every execution is logged (``calls.log``), the effect itself is applied
once per idempotency key (``applied-<key>``: an idempotent tool, as an outside API with an idempotency
key is), and while a ``hold`` file exists the call blocks *after* applying — where a test kills the
worker. The files live in ``$CONCLAVE_TEST_EFFECTS``, so processes share them.

``Settings.kinds`` imports modules by name in every process (API and workers), which is how this module's
tool gets registered there; the kind it exposes, ``effect_agent``, is the ``agent`` kind under another
name.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from conclave.agents.loop import KIND as AGENT
from conclave.core.kinds import RunKind
from conclave.tools import ToolContext, register_tool, tool


def effects_dir() -> Path:
    return Path(os.environ["CONCLAVE_TEST_EFFECTS"])


@tool
async def effect(tag: str, ctx: ToolContext) -> str:
    """Pay for something (a side effect outside the workspace, applied once per idempotency key)."""
    d = effects_dir()
    key = ctx.idempotency_key
    with (d / "calls.log").open("a") as f:
        f.write(f"{key} {tag}\n")
    try:
        fd = os.open(d / f"applied-{key}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        fresh = False
    else:
        os.write(fd, tag.encode())
        os.close(fd)
        fresh = True
    while (d / "hold").exists():  # noqa: ASYNC110 - another process removes the file; nothing to await
        await asyncio.sleep(0.05)
    return f"paid {tag}" if fresh else f"already paid {tag}"


def calls(d: Path) -> list[tuple[str, str]]:
    """Every execution of ``effect``: (idempotency key, tag)."""
    p = d / "calls.log"
    if not p.exists():
        return []
    return [tuple(line.split(" ", 1)) for line in p.read_text().splitlines()]  # type: ignore[misc]


def applied(d: Path) -> dict[str, str]:
    """Effects applied: idempotency key -> tag."""
    return {p.name.removeprefix("applied-"): p.read_text() for p in d.glob("applied-*")}


register_tool(effect)

KIND = RunKind(
    name="effect_agent", run=AGENT.run, options=AGENT.options, description=AGENT.description, check=AGENT.check
)
