"""A run kind for the console tests: ``report`` writes a finished research workspace (report.md
with numbered citations, archived sources, index.md) in one durable step, so the workspace page can
be tested on a real run without a model. The report carries markup a sanitiser must remove."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from conclave.core.context import RunContext
from conclave.core.kinds import Outcome, RunKind
from conclave.core.workspace import Workspace
from conclave.tools._text import archive_source

#: (title, source, text) of the archived sources, written with the research workflow's own function.
SOURCES = [
    ("Coroutines and Tasks", "python-docs/asyncio-task.html", "Tasks are used to schedule coroutines *concurrently*."),
    ("threading", "python-docs/threading.html", "Threads are scheduled preemptively by the operating system."),
]

REPORT = """# How do asyncio tasks differ from threads?

## Scheduling

Asyncio tasks switch only at `await` points on one event loop [1], while threads are switched
preemptively by the operating system [2]. Both can overlap waiting for I/O [1, 2]; an index like a[1]
or a number with no reference [7] stays text.

<img src="x" onerror="window.__xss = 1"><script>window.__xss = 2</script>

## References

[1] {0} — Coroutines and Tasks
[2] {1} — threading
"""


def source_paths() -> list[str]:
    """Where the run archives SOURCES (the same function, on an empty workspace)."""
    ws = Workspace({})
    return [archive_source(ws, title=t, source=s, text=x) for t, s, x in SOURCES]


class ReportOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


async def run_report(ctx: RunContext) -> Outcome:
    async def body() -> int:
        ws = ctx.workspace
        paths = [archive_source(ws, title=t, source=s, text=x, note="found by search: tasks") for t, s, x in SOURCES]
        ws.write("index.md", f"# Index\n\n- [the report](report.md)\n- [a source]({paths[1]})\n")
        ws.write("report.md", REPORT.format(*paths))
        ws.write("logs/data.bin", b"\x00\x01\x02binary")
        await ctx.emit("stage.started", {"stage": "write"})
        await ctx.emit("stage.finished", {"stage": "write", "sections": 1})
        return len(SOURCES)

    n = await ctx.step("report", body)
    return Outcome(output=f"A report from {n} sources.", result={"sources": n})


REPORT_KIND = RunKind(name="report", run=run_report, options=ReportOptions)
