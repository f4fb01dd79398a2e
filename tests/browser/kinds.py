"""A run kind for the console tests: ``report`` writes a finished research workspace (report.md
with numbered citations, archived sources, index.md) in one durable step, so the workspace page can
be tested on a real run without a model. The report carries markup a sanitiser must remove."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from conclave.agents.context import RunContext
from conclave.controller.kinds import Outcome, RunKind

SOURCES = {
    "knowledge_base/sources/s001-asyncio-tasks.md": (
        "---\nsource: python-docs/asyncio-task.html\ntitle: Coroutines and Tasks\n---\n\n"
        "# Coroutines and Tasks\n\nTasks are used to schedule coroutines *concurrently* on the event loop."
    ),
    "knowledge_base/sources/s002-threading.md": (
        "---\nsource: python-docs/threading.html\ntitle: threading\n---\n\n"
        "# threading — Thread-based parallelism\n\nThreads are scheduled preemptively by the operating system."
    ),
}

REPORT = """# How do asyncio tasks differ from threads?

## Scheduling

Asyncio tasks switch only at `await` points on one event loop [1], while threads are switched
preemptively by the operating system [2]. Both can overlap waiting for I/O [1, 2]; an index like a[1]
or a number with no reference [7] stays text.

<img src="x" onerror="window.__xss = 1"><script>window.__xss = 2</script>

## References

[1] knowledge_base/sources/s001-asyncio-tasks.md — Coroutines and Tasks
[2] knowledge_base/sources/s002-threading.md — threading
"""


class ReportOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


async def run_report(ctx: RunContext) -> Outcome:
    async def body() -> int:
        ws = ctx.workspace
        for path, text in SOURCES.items():
            ws.write(path, text)
        ws.write("index.md", "# Index\n\n- [the report](report.md)\n- [a source](knowledge_base/sources/s002-threading.md)\n")
        ws.write("report.md", REPORT)
        ws.write("logs/data.bin", b"\x00\x01\x02binary")
        await ctx.emit("stage.started", {"stage": "write"})
        await ctx.emit("stage.finished", {"stage": "write", "sections": 1})
        return len(SOURCES)

    n = await ctx.step("report", body)
    return Outcome(output=REPORT, result={"sources": n})


REPORT_KIND = RunKind(name="report", run=run_report, options=ReportOptions)
