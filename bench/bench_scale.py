"""Scale on one machine, side by side with LangGraph: N concurrent agent runs of S steps, L per model call.

The same work on both sides (see ``bench/_agent_runs.py``): a run is S steps, a step one model call
(L seconds) plus the tool call it asks for, the answer at step S. For every N, in one invocation:

* **Conclave**: ``--workers`` worker processes and one Valkey (fresh for each load), every model
  turn and tool call a durable step; the client submits every run and follows its event stream;
* **LangGraph**: the anchor ``../shared/anchors/langgraph_concurrent.py`` in its own process
  (prebuilt ReAct agent, all runs in one asyncio loop) on ``InMemorySaver`` and on
  ``AsyncPostgresSaver`` against a PostgreSQL server it starts.

Both clocks run from the client's submit to the client seeing the run finished. Reported per N:
completion time and its ratio to the ideal S x L, Conclave / LangGraph, CPU seconds of every process
(Conclave's workers, Valkey and the client; the LangGraph process and the PostgreSQL server),
durable steps per CPU-second, Valkey bytes per finished run and worker memory per active run. Then
scale-out (steps per worker CPU-second with 1, 2, 4 workers) and a py-spy profile of one worker.
Every run of every load is checked (``BenchCheckFailed`` otherwise); plots go to
``bench/results/scale.png`` and ``scale_out.png``.

    python -m bench scale [--runs 100 300 1000] [--steps 20] [--latency 0.05] [--workers 2]
                          [--savers memory postgres] [--scale-out 1 2 4] [--scale-out-runs 300]
                          [--profile-runs 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from bench._agent_runs import Workload
from bench._common import RESULTS, emit, log, plot
from bench._conclave_load import run_load
from bench._langgraph import run_anchor
from bench._profile import summarise


def _partial(data: dict[str, Any]) -> None:
    """What is measured so far, in case a later load fails (bench/out/, not kept in git)."""
    out = RESULTS.parent / "out" / "scale.partial.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2))


def _ratios(c: dict[str, Any], lg: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    conclave_cpu = c["cpu_seconds"]["workers_total"] + c["cpu_seconds"]["valkey"]
    for saver, row in lg.items():
        out[f"completion_conclave_over_langgraph_{saver}"] = round(c["completion_s"] / row["seconds"], 3)
        out[f"cpu_conclave_over_langgraph_{saver}"] = round(conclave_cpu / row["total_cpu_seconds"], 3)
        out[f"durable_steps_per_cpu_second_conclave_over_langgraph_{saver}"] = round(
            c["durable_steps_per_cpu_second"] / row["durable_steps_per_cpu_second"], 2
        )
    return out


def _draw(loads: list[dict[str, Any]], savers: list[str], ideal: float, workers: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [x["runs"] for x in loads]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    a.plot(ns, [x["conclave"]["completion_s"] for x in loads], "o-", color="#c44e52", label="Conclave (client clock)")
    a.plot(ns, [x["conclave"]["in_worker_span_s"] for x in loads], "o:", color="#c44e52", label="Conclave, in-worker")
    colors = {"memory": "#4c72b0", "postgres": "#55a868", "none": "#999999"}
    for s in savers:
        a.plot(ns, [x["langgraph"][s]["seconds"] for x in loads], "s-", color=colors[s], label=f"LangGraph {s}")
    a.axhline(ideal, ls="--", color="#999", label="ideal (S x L)")
    a.set_xscale("log")
    a.set_yscale("log")
    a.set_xlabel("concurrent runs")
    a.set_ylabel("completion time (s)")
    a.set_title(f"Completion time ({workers} Conclave workers)")
    a.legend(fontsize=7)
    b.plot(
        ns,
        [x["conclave"]["cpu_seconds"]["workers_total"] for x in loads],
        "o-",
        color="#c44e52",
        label="Conclave workers",
    )
    b.plot(ns, [x["conclave"]["cpu_seconds"]["valkey"] for x in loads], "o--", color="#dd8452", label="Valkey")
    b.plot(ns, [x["conclave"]["cpu_seconds"]["client"] for x in loads], "o:", color="#937860", label="Conclave client")
    for s in savers:
        b.plot(
            ns, [x["langgraph"][s]["cpu_seconds"] for x in loads], "s-", color=colors[s], label=f"LangGraph {s} process"
        )
        if s == "postgres":
            b.plot(
                ns,
                [x["langgraph"][s]["postgres_cpu_seconds"] for x in loads],
                "s--",
                color="#8172b3",
                label="PostgreSQL server",
            )
    b.set_xscale("log")
    b.set_yscale("log")
    b.set_xlabel("concurrent runs")
    b.set_ylabel("CPU seconds during the load")
    b.set_title("CPU of every process")
    b.legend(fontsize=7)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "scale.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench scale", description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--runs", type=int, nargs="*", default=[100, 300, 1000], help="loads (none: skip)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--latency", type=float, default=0.05)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--savers", nargs="*", default=["memory", "postgres"], choices=["none", "memory", "postgres"])
    p.add_argument("--scale-out", type=int, nargs="*", default=[1, 2, 4], help="worker counts (none: skip)")
    p.add_argument("--scale-out-runs", type=int, default=300)
    p.add_argument("--profile-runs", type=int, default=300, help="runs of the py-spy-profiled load (0: skip)")
    a = p.parse_args(argv)
    w = Workload(steps=a.steps, latency_s=a.latency)
    loads: list[dict[str, Any]] = []
    for n in a.runs:
        c = asyncio.run(run_load(w, n, a.workers))
        lg = {row["saver"]: row for row in run_anchor([n], a.steps, a.latency, a.savers)} if a.savers else {}
        loads.append({"runs": n, "conclave": c, "langgraph": lg, "ratios": _ratios(c, lg)})
        _partial({"loads": loads})
    scale_out = []
    for k in a.scale_out:
        scale_out.append(asyncio.run(run_load(w, a.scale_out_runs, k, tag="so")))
        _partial({"loads": loads, "scale_out": scale_out})
    if scale_out:
        one = scale_out[0]["steps_per_worker_cpu_second"]
        for row in scale_out:
            row["efficiency_vs_first"] = round(row["steps_per_worker_cpu_second"] / one, 3)
    profile = None
    if a.profile_runs > 0:
        out = RESULTS.parent / "out" / "scale_profile.txt"  # raw stacks: large, not kept in git
        out.parent.mkdir(parents=True, exist_ok=True)
        prof_load = asyncio.run(run_load(w, a.profile_runs, a.workers, profile=out, tag="prof"))
        profile = {
            "runs": a.profile_runs,
            "workers": a.workers,
            "raw_stacks": str(out.relative_to(RESULTS.parent.parent)),
            "load_under_profiler": {k: prof_load[k] for k in ("completion_s", "worker_cpu_ms_per_step")},
            **summarise(out),
        }
    data = {
        "workload": {
            "steps_per_run": a.steps,
            "latency_s": a.latency,
            "ideal_s": a.steps * a.latency,
            "step": "one model call + the tool call it asks for; the answer at step S",
            "clock": "client submit -> client sees the run finished (Conclave: run.finished on the event "
            "stream; LangGraph: around ainvoke)",
            "conclave": f"{a.workers} worker processes, one Valkey (AOF, appendfsync always), tool 'write' "
            "(a different file each step)",
            "langgraph": "anchors/langgraph_concurrent.py, one process; AsyncPostgresSaver on PostgreSQL",
        },
        "loads": loads,
        "scale_out": scale_out,
        "profile": profile,
    }
    emit("scale", data)
    if loads:
        _draw(loads, list(a.savers), w.steps * w.latency_s, a.workers)
    if scale_out:
        plot(
            "scale_out",
            lambda ax: (
                ax.plot(
                    [r["workers"] for r in scale_out],
                    [r["efficiency_vs_first"] for r in scale_out],
                    "o-",
                    color="#c44e52",
                    label="steps per worker CPU-second, / 1 worker",
                ),
                ax.axhline(0.9, ls="--", color="#999", label="goal 0.9"),
                ax.set_ylim(0, 1.3),
                ax.set_xlabel("worker processes"),
                ax.set_ylabel("efficiency"),
                ax.set_title(f"Scale-out, {a.scale_out_runs} runs x {a.steps} steps"),
                ax.legend(fontsize=8),
            ),
        )
    log("done")
    return data


if __name__ == "__main__":
    main()
