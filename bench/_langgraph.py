"""LangGraph under the same load, from the anchor script run in its own process (``_lg_driver``).

The anchor asserts that every run made its S model calls; on top of that this checks that the
checkpointer stored every run (one thread per run) and every superstep of it: LangGraph's ReAct
graph writes 2S + 1 checkpoints per run (the input, then one per agent and per tools superstep,
and the start), so a load of N runs must add N x (2S + 1) checkpoints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from bench._common import ANCHORS, ROOT, check, log

ANCHOR = ANCHORS / "langgraph_concurrent.py"


def checkpoints_per_run(steps: int) -> int:
    return 2 * steps + 1


def run_anchor(
    runs: list[int], steps: int, latency: float, savers: list[str], *, timeout_s: float = 3600
) -> list[dict[str, Any]]:
    """One anchor process for these loads; one JSON row per (saver, runs), checked."""
    check(ANCHOR.exists(), f"the LangGraph anchor script is missing: {ANCHOR}")
    cmd = [sys.executable, "-m", "bench._lg_driver", str(ANCHOR), "--runs", *map(str, runs)]
    cmd += ["--steps", str(steps), "--latency", str(latency), "--saver", *savers]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    check(
        proc.returncode == 0,
        f"the LangGraph anchor exited with {proc.returncode} (its runs did not all make {steps} model calls, "
        f"or it could not run): {proc.stderr[-1500:]}",
    )
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    check(
        len(rows) == len(runs) * len(savers),
        f"the anchor printed {len(rows)} loads, expected {len(runs) * len(savers)}",
    )
    for row in rows:
        n, saver = row["runs"], row["saver"]
        check(row["steps"] == steps and row["latency_s"] == latency, f"the anchor ran another workload: {row}")
        if saver != "none":
            want = n * checkpoints_per_run(steps)
            check(
                row["checkpoint_threads"] == n and row["checkpoints"] == want,
                f"LangGraph {saver} {n} runs: {row['checkpoint_threads']} threads, {row['checkpoints']} checkpoints "
                f"stored; expected {n} and {want}",
            )
        row["total_cpu_seconds"] = round(row["cpu_seconds"] + row.get("postgres_cpu_seconds", 0.0), 2)
        row["durable_steps_per_cpu_second"] = round(n * steps / row["total_cpu_seconds"], 1)
        log(
            f"langgraph {saver} {n} runs x {steps} steps: {row['seconds']:.2f} s ({row['ratio_to_ideal']}x ideal), "
            f"process {row['cpu_seconds']:.1f} cpu-s, postgres {row.get('postgres_cpu_seconds', 0):.1f} cpu-s"
        )
    return rows
