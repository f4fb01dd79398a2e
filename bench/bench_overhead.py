"""Orchestration overhead per agent step: Conclave (every step persisted to Valkey) vs LangGraph.

The same tool-calling loop on both sides, at 10, 50 and 200 steps: a zero-latency model that asks
for one ``lookup`` call per step (a different query each step) and answers at the last step, and a
``lookup`` tool returning a short string. LangGraph runs its prebuilt ReAct agent with no
checkpointer, ``InMemorySaver`` and ``SqliteSaver``, from the anchor
``../shared/anchors/langgraph_steps.py``, timed around ``invoke``. Conclave runs it as an ``agent``
run on a worker in this process (each model turn and each tool call a durable step on a real
Valkey), without and with a capped budget (ledger reservations and the ``<budget>`` block every
turn), timed on the same kind of clock: from the client's submit to the client reading
``run.finished`` on the run's event stream. The sides are interleaved: each round runs one run of
every side, in an order that rotates by round, so a machine whose speed drifts during the benchmark
(a shared 2-core box's does, by tens of percent from one minute to the next) moves both sides of a
ratio alike. The worker's own claim-to-finish time is reported
beside it as ``in_worker``, and the CPU each side spent per step (``cpu_ms``: for Conclave this
process, worker and client, plus Valkey; for LangGraph this process), which a shared machine's
scheduling delays do not inflate as they inflate wall times. Every run of both sides is checked (steps, tool calls, tokens, events,
the budget block); medians over ``reps`` runs after a warm-up, milliseconds per step.

    python -m bench overhead [--reps 7] [--steps 10 50 200] [--fsync always|everysec]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from typing import Any

import uvloop

from bench import _procs
from bench._agent_runs import Workload, submit_and_watch, verify, watch_client
from bench._common import ANCHORS, check, emit, log, plot, temp_valkey

ANCHOR = ANCHORS / "langgraph_steps.py"


def _summary(xs: list[float]) -> dict[str, Any]:
    return {"median": round(statistics.median(xs), 4), "min": round(min(xs), 4), "max": round(max(xs), 4), "n": len(xs)}


class _ConclaveSide:
    """One worker in this process (on the running loop) with its own key prefix and settings;
    ``rep`` submits one run, follows its events to ``run.finished`` and checks what it committed."""

    def __init__(self, url: str, valkey_pid: int, steps: int, *, budget: bool) -> None:
        from conclave.cluster.config import ModelSpec
        from conclave.config import Settings

        self.url, self.valkey_pid, self.steps = url, valkey_pid, steps
        self.w = Workload(steps=steps, latency_s=0.0, tool="lookup", budget=budget)
        prefix = f"bo{os.getpid()}s{steps}b{int(budget)}"
        opts = {k: v for k, v in self.w.sim_options().items() if k != "latency_s"}
        self.settings = Settings(
            key_prefix=prefix, models=[ModelSpec(name="sim", engine="sim", options=opts)], lease_seconds=30
        )
        self.name = f"bench-{prefix}"

    async def start(self) -> None:
        from conclave.controller.redis_store import RedisRunStore
        from conclave.controller.worker import Worker, connect, local_router

        self.r = connect(self.url)
        self.store = RedisRunStore(self.r, self.settings.key_prefix, binary=connect(self.url, decode=False))
        self.watch_redis = watch_client(self.url, 4)
        self.worker = Worker(self.settings, local_router(self.settings), redis_url=self.url, name=self.name)
        self.task = asyncio.ensure_future(self.worker.run())

    async def rep(self) -> tuple[float, float, float]:
        """(client ms per step, in-worker ms per step, CPU ms per step: this process + Valkey)."""
        c0, v0 = _procs.self_cpu(), _procs.cpu(self.valkey_pid)
        t0, seen = await submit_and_watch(self.store, self.watch_redis, self.w.spec(), 1, timeout_s=300)
        used = _procs.self_cpu() - c0 + _procs.cpu(self.valkey_pid) - v0
        checked = await verify(self.store, seen, self.w)
        n = self.steps
        return (seen[0].finished - t0) * 1000 / n, checked.in_worker_s[0] * 1000 / n, used * 1000 / n

    async def stop(self) -> None:
        self.worker.stop()
        await self.task
        await self.watch_redis.aclose()
        await self.r.aclose()


def _anchor() -> Any:
    check(ANCHOR.exists(), f"the LangGraph anchor script is missing: {ANCHOR}")
    argv = sys.argv
    sys.argv = [str(ANCHOR)]
    try:
        spec = importlib.util.spec_from_file_location("langgraph_steps", ANCHOR)
        assert spec and spec.loader
        lg = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(lg)
    finally:
        sys.argv = argv
    return lg


def _langgraph_agents(lg: Any, steps: int) -> dict[str, tuple[Any, bool]]:
    """The anchor's ReAct agent with no checkpointer, ``InMemorySaver`` and ``SqliteSaver``."""
    import sqlite3

    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.prebuilt import create_react_agent

    lg.N_STEPS = steps  # the anchor's checks count AI messages against this
    model = lg.FakeToolModel(n_steps=steps)
    db = os.path.join(tempfile.mkdtemp(), "lg.sqlite")
    return {
        "langgraph_no_checkpointer": (create_react_agent(model, [lg.lookup]), False),
        "langgraph_inmemory": (create_react_agent(model, [lg.lookup], checkpointer=InMemorySaver()), True),
        "langgraph_sqlite": (
            create_react_agent(
                model, [lg.lookup], checkpointer=SqliteSaver(sqlite3.connect(db, check_same_thread=False))
            ),
            True,
        ),
    }


def _langgraph_rep(lg: Any, name: str, agent: Any, checkpointed: bool, steps: int) -> tuple[float, float]:
    """One ``invoke``, timed around it as the anchor's ``run_agent`` times it, with the anchor's checks
    (``steps`` model calls, then the final answer). Returns (ms per step, CPU ms per step)."""
    cfg: dict[str, Any] = {"recursion_limit": 500}
    if checkpointed:
        cfg["configurable"] = {"thread_id": str(uuid.uuid4())}
    c0, t0 = _procs.self_cpu(), time.perf_counter()
    out = agent.invoke({"messages": [lg.HumanMessage(content="go")]}, cfg)
    dt, used = time.perf_counter() - t0, _procs.self_cpu() - c0
    msgs = out["messages"]
    n_ai = sum(1 for m in msgs if isinstance(m, lg.AIMessage))
    check(
        n_ai == steps and msgs[-1].content == "final answer",
        f"{name}: a LangGraph run made {n_ai} model calls (expected {steps}) and ended {msgs[-1].content!r}",
    )
    return dt * 1000 / steps, used * 1000 / steps


def measure(lg: Any, url: str, valkey_pid: int, reps: int, steps: int) -> dict[str, Any]:
    """Every side at ``steps`` steps, interleaved: each round runs one run of every side, in an order
    that rotates from round to round, so a machine that slows down or speeds up during the benchmark
    moves both sides of each ratio alike. LangGraph's synchronous ``invoke`` runs in a thread while
    the workers' loop waits (idle: no run of theirs is in flight). Round 0 is a warm-up, discarded."""
    agents = _langgraph_agents(lg, steps)
    sides = {
        "conclave": _ConclaveSide(url, valkey_pid, steps, budget=False),
        "conclave_budget": _ConclaveSide(url, valkey_pid, steps, budget=True),
    }
    order = [*agents, *sides]
    lg_ms: dict[str, list[float]] = {k: [] for k in agents}
    lg_cpu: dict[str, list[float]] = {k: [] for k in agents}
    cc: dict[str, tuple[list[float], list[float], list[float]]] = {k: ([], [], []) for k in sides}

    async def go() -> None:
        for side in sides.values():
            await side.start()
        try:
            for i in range(reps + 1):
                for name in order[i % len(order) :] + order[: i % len(order)]:
                    if name in agents:
                        agent, checkpointed = agents[name]
                        ms, cpu = await asyncio.to_thread(_langgraph_rep, lg, name, agent, checkpointed, steps)
                        if i > 0:
                            lg_ms[name].append(ms)
                            lg_cpu[name].append(cpu)
                    else:
                        got = await sides[name].rep()
                        if i > 0:
                            for xs, x in zip(cc[name], got, strict=True):
                                xs.append(x)
        finally:
            for side in sides.values():
                await side.stop()

    # On the event loop a worker has in production (Ray's actors and the standalone worker: uvloop).
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(go())
    row: dict[str, Any] = {k: _summary(lg_ms[k]) | {"cpu_ms": round(statistics.median(lg_cpu[k]), 4)} for k in agents}
    for k, (client, in_worker, cpu) in cc.items():
        row[k] = {"client": _summary(client), "in_worker": _summary(in_worker), "cpu_ms": _summary(cpu)}
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(
        prog="python -m bench overhead", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--steps", type=int, nargs="+", default=[10, 50, 200])
    p.add_argument("--fsync", choices=["always", "everysec"], default="always", help="Valkey's appendfsync")
    p.add_argument("--json", action="store_true", help="(output is always JSON)")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    lg = _anchor()
    by_steps: dict[str, Any] = {}
    from conclave.tools import register_tool, tool

    @tool(name="lookup", description="Return a short string.")
    def lookup(q: str) -> str:
        return f"result for {q}"

    register_tool(lookup)
    with temp_valkey(a.fsync) as srv:
        for steps in a.steps:
            row = measure(lg, srv.url, srv.proc.pid, a.reps, steps)
            base = row["langgraph_inmemory"]["median"]
            row["ratio_to_langgraph_inmemory"] = {
                "conclave": round(row["conclave"]["client"]["median"] / base, 3),
                "conclave_budget": round(row["conclave_budget"]["client"]["median"] / base, 3),
                "conclave_in_worker": round(row["conclave"]["in_worker"]["median"] / base, 3),
                "conclave_budget_in_worker": round(row["conclave_budget"]["in_worker"]["median"] / base, 3),
                "langgraph_no_checkpointer": round(row["langgraph_no_checkpointer"]["median"] / base, 3),
                "langgraph_sqlite": round(row["langgraph_sqlite"]["median"] / base, 3),
            }
            base_cpu = row["langgraph_inmemory"]["cpu_ms"]
            row["cpu_ratio_to_langgraph_inmemory"] = {
                "conclave": round(row["conclave"]["cpu_ms"]["median"] / base_cpu, 3),
                "conclave_budget": round(row["conclave_budget"]["cpu_ms"]["median"] / base_cpu, 3),
            }
            by_steps[str(steps)] = row
            log(f"{steps} steps: {json.dumps(row['ratio_to_langgraph_inmemory'])}")
    lo, hi = str(min(a.steps)), str(max(a.steps))
    growth = {
        name: round(
            by_steps[hi][name]["client"]["median"] / by_steps[lo][name]["client"]["median"]
            if name.startswith("conclave")
            else by_steps[hi][name]["median"] / by_steps[lo][name]["median"],
            3,
        )
        for name in ("conclave", "conclave_budget", "langgraph_inmemory", "langgraph_no_checkpointer")
    }
    cpu_growth = {
        name: round(by_steps[hi][name]["cpu_ms"]["median"] / by_steps[lo][name]["cpu_ms"]["median"], 3)
        for name in ("conclave", "conclave_budget")
    } | {
        name: round(by_steps[hi][name]["cpu_ms"] / by_steps[lo][name]["cpu_ms"], 3)
        for name in ("langgraph_inmemory", "langgraph_no_checkpointer")
    }
    data = {
        "reps": a.reps,
        "valkey_appendfsync": a.fsync,
        "conclave_event_loop": "uvloop (as a worker in production)",
        "clock": "Conclave: client submit -> client reads run.finished (in_worker: claim -> finish); "
        "LangGraph: around invoke",
        "order": "interleaved: each round runs every side once, in an order rotating by round; round 0 discarded",
        "ms_per_step": by_steps,
        f"per_step_at_{hi}_over_{lo}": growth,
        f"cpu_per_step_at_{hi}_over_{lo}": cpu_growth,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    emit("overhead" if a.fsync == "always" else f"overhead_fsync_{a.fsync}", data)
    series = [
        ("langgraph_no_checkpointer", "LangGraph, none", "#bbbbbb"),
        ("langgraph_inmemory", "LangGraph, InMemorySaver", "#4c72b0"),
        ("langgraph_sqlite", "LangGraph, SqliteSaver", "#55a868"),
        ("conclave", "Conclave, persisted", "#c44e52"),
        ("conclave_budget", "Conclave, persisted, capped budget", "#dd8452"),
    ]

    def value(row: dict[str, Any], key: str) -> float:
        v = row[key]
        return float(v["client"]["median"] if key.startswith("conclave") else v["median"])

    plot(
        "overhead" if a.fsync == "always" else f"overhead_fsync_{a.fsync}",
        lambda ax: (
            [
                ax.plot(a.steps, [value(by_steps[str(s)], k) for s in a.steps], "o-", color=c, label=label)
                for k, label, c in series
            ],
            ax.set_xscale("log"),
            ax.set_xlabel("steps per run"),
            ax.set_ylabel("ms per step (median; Conclave on the client's clock)"),
            ax.set_title("Orchestration overhead per agent step"),
            ax.legend(fontsize=8),
        ),
    )
    return data


if __name__ == "__main__":
    main()
