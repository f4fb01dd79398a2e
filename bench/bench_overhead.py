"""Orchestration overhead per agent step: Conclave (every step persisted to Redis) vs LangGraph.

The same tool-calling loop on both sides: a zero-latency model that asks for one tool call per step
and answers at step 50, and a `lookup` tool returning a short string. Conclave runs it as an
`agent` run on an in-process worker against a real Valkey (each model turn and each tool call a
durable step: checkpoint + events + ledger in one Lua call); LangGraph runs its prebuilt ReAct agent
with no checkpointer, `InMemorySaver` and `SqliteSaver`, from the anchor script in
`../shared/anchors/langgraph_steps.py`. Side by side in one process, medians over `reps` runs after
a warm-up, milliseconds per step, ratios to LangGraph + InMemorySaver.

    python -m bench overhead [--reps 7] [--steps 50] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import emit, plot, temp_valkey

ANCHOR = Path(__file__).resolve().parents[1].parent / "shared" / "anchors" / "langgraph_steps.py"


def _summary(xs: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def conclave_per_step(reps: int, steps: int, *, budget_awareness: bool) -> dict[str, Any]:
    from redis.asyncio import Redis

    from conclave.cluster.config import ModelSpec
    from conclave.config import Settings
    from conclave.controller.redis_store import RedisRunStore
    from conclave.controller.worker import Worker, local_router
    from conclave.schema import Budget, TaskSpec
    from conclave.tools import register_tool, tool

    @tool(name="lookup", description="Return a short string.")
    def lookup(q: str) -> str:
        return f"result for {q}"

    register_tool(lookup)
    prefix = f"bo{os.getpid()}{int(budget_awareness)}"
    model = ModelSpec(name="sim", engine="sim", options={"mode": "tool_loop", "steps": steps, "tool_name": "lookup"})
    settings = Settings(key_prefix=prefix, models=[model], lease_seconds=30)

    async def go(url: str) -> list[float]:
        r = Redis.from_url(url, decode_responses=True)
        store = RedisRunStore(r, prefix, binary=Redis.from_url(url))
        w = Worker(settings, local_router(settings), redis_url=url, name="bench")
        task = asyncio.ensure_future(w.run())
        per_step = []
        opts = {"budget_awareness": budget_awareness, "max_tokens": 64}
        for i in range(reps + 1):
            budget = Budget(model_calls=10 * steps, output_tokens=10**6) if budget_awareness else None
            spec = TaskSpec(
                kind="agent",
                input="go",
                model="sim",
                tools=["lookup"],
                max_steps=steps + 5,
                options=opts,
                budget=budget,
            )
            run = (await store.submit(spec)).run
            while True:
                got = await store.get(run.id)
                assert got is not None
                if got.status.terminal:
                    break
                await asyncio.sleep(0.002)
            assert got.status.value == "succeeded" and got.usage.model_calls == steps, got
            assert got.started_at and got.finished_at
            if i > 0:  # the first run warms imports and scripts
                per_step.append((got.finished_at - got.started_at).total_seconds() * 1000 / steps)
        w.stop()
        await task
        await r.aclose()
        return per_step

    with temp_valkey() as srv:
        return _summary(asyncio.run(go(srv.url)))


def langgraph_per_step(reps: int, steps: int) -> dict[str, Any]:
    if not ANCHOR.exists():
        raise FileNotFoundError(f"the LangGraph anchor script is missing: {ANCHOR}")
    argv = sys.argv
    sys.argv = [str(ANCHOR), str(reps), str(steps)]
    try:
        spec = importlib.util.spec_from_file_location("langgraph_steps", ANCHOR)
        assert spec and spec.loader
        lg = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(lg)
    finally:
        sys.argv = argv
    import sqlite3

    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.prebuilt import create_react_agent

    model = lg.FakeToolModel()
    out = {
        "langgraph_no_checkpointer": lg.run_agent(create_react_agent(model, [lg.lookup]), reps, False),
        "langgraph_inmemory": lg.run_agent(
            create_react_agent(model, [lg.lookup], checkpointer=InMemorySaver()), reps, True
        ),
    }
    db = os.path.join(tempfile.mkdtemp(), "lg.sqlite")
    saver = SqliteSaver(sqlite3.connect(db, check_same_thread=False))
    out["langgraph_sqlite"] = lg.run_agent(create_react_agent(model, [lg.lookup], checkpointer=saver), reps, True)
    for v in out.values():
        v.pop("raw", None)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench overhead")
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--json", action="store_true", help="(output is always JSON)")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    results.update(langgraph_per_step(a.reps, a.steps))
    results["conclave_redis"] = conclave_per_step(a.reps, a.steps, budget_awareness=False)
    # With a capped budget: every call reserved/committed in the ledger, the <budget> block each step.
    results["conclave_redis_budget_aware"] = conclave_per_step(a.reps, a.steps, budget_awareness=True)
    base = results["langgraph_inmemory"]["median"]
    ratios = {k: v["median"] / base for k, v in results.items()}
    data = {
        "steps": a.steps,
        "reps": a.reps,
        "ms_per_step": results,
        "ratio_to_langgraph_inmemory": ratios,
        "seconds": time.perf_counter() - t0,
    }
    emit("overhead", data)
    names = list(results)
    plot(
        "overhead",
        lambda ax: (
            ax.barh(names, [results[n]["median"] for n in names], color=["#999"] * 3 + ["#c44e52", "#dd8452"]),
            ax.set_xlabel(f"ms per agent step (median, {a.steps}-step runs)"),
            ax.set_title("Orchestration overhead per step"),
        ),
    )
    return data


if __name__ == "__main__":
    main()
