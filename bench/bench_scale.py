"""Scale on one machine: many concurrent agent runs of 20 steps on a sim model with 50 ms per call.

Each run is an `agent` run whose model asks for one `ls` call per step and answers at step 20. The
ideal completion time is 20 x 50 ms (the sim engine has no replica cap, so no queueing). Reported
per load: completion time / ideal, Redis memory per run, worker memory per active run, and the
workers' CPU seconds. Workers are separate processes (one per core), as in production.

    python -m bench scale [--runs 100 300 1000] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import emit, plot, temp_valkey

ROOT = Path(__file__).resolve().parents[1]
STEPS, LATENCY = 20, 0.05


def _proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds, RSS bytes) of a process from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(parts[11]) + int(parts[12])) / ticks
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    return cpu, rss


def _workers(url: str, prefix: str, n: int, concurrency: int, tmp: Path) -> list[subprocess.Popen[bytes]]:
    cfg = tmp / "conclave.toml"
    cfg.write_text(
        "[[models]]\n"
        'name = "sim"\nengine = "sim"\nmax_ongoing_requests = 100000\n'
        f'options = {{ mode = "tool_loop", steps = {STEPS}, tool_name = "ls", tool_arguments = {{}}, latency_s = {LATENCY} }}\n'
    )
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        CONCLAVE_KEY_PREFIX=prefix,
        CONCLAVE_WORKER_CONCURRENCY=str(concurrency),
        CONCLAVE_LOG_LEVEL="WARNING",
        CONCLAVE_LEASE_SECONDS="60",
    )
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "conclave.controller.worker",
                "--config",
                str(cfg),
                "--redis-url",
                url,
                "--name",
                f"w{i}",
            ],
            env=env,
        )
        for i in range(n)
    ]


async def one_load(url: str, runs: int, workers: int) -> dict[str, Any]:
    from conclave.controller.redis_store import RedisRunStore
    from conclave.controller.worker import connect
    from conclave.schema import TaskSpec

    prefix = f"sc{runs}"
    r = connect(url)
    store = RedisRunStore(r, prefix, binary=connect(url, decode=False))
    await store.ready()
    mem0 = int((await r.info("memory"))["used_memory"])
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    procs = _workers(url, prefix, workers, max(1, -(-runs // workers)), tmp)
    await asyncio.sleep(2.5)  # let the workers import and connect before the clock starts
    base = [_proc_stats(p.pid) for p in procs]
    spec = TaskSpec(
        kind="agent",
        input="go",
        model="sim",
        tools=["ls"],
        max_steps=STEPS + 5,
        options={"max_tokens": 32, "budget_awareness": False},
    )
    t0 = time.perf_counter()
    ids: list[str] = []
    for k in range(0, runs, 100):  # many clients submit at once, as they would against the API
        batch = await asyncio.gather(*(store.submit(spec) for _ in range(min(100, runs - k))))
        ids += [b.run.id for b in batch]
    submitted = time.perf_counter() - t0
    peak_rss = [b[1] for b in base]
    done = 0
    while done < runs:
        await asyncio.sleep(0.2)
        for i, p in enumerate(procs):
            peak_rss[i] = max(peak_rss[i], _proc_stats(p.pid)[1])
        done = sum(1 for x in await store.get_many(ids) if x.status.terminal)
        if time.perf_counter() - t0 > 900:
            break
    elapsed = time.perf_counter() - t0
    final = await store.get_many(ids)
    cpu = sum(_proc_stats(p.pid)[0] - b[0] for p, b in zip(procs, base, strict=True))
    mem1 = int((await r.info("memory"))["used_memory"])
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(20)
    await r.aclose()
    ideal = STEPS * LATENCY
    return {
        "runs": runs,
        "workers": workers,
        "succeeded": sum(1 for x in final if x.status.value == "succeeded"),
        "seconds": round(elapsed, 2),
        "submit_seconds": round(submitted, 2),
        "ideal_seconds": ideal,
        "ratio_to_ideal": round(elapsed / ideal, 2),
        "redis_bytes_per_run": (mem1 - mem0) // runs,
        "worker_rss_bytes_per_active_run": (sum(peak_rss) - sum(b[1] for b in base)) // runs,
        "worker_cpu_seconds": round(cpu, 2),
        "steps_per_second": round(runs * STEPS / elapsed, 1),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench scale")
    p.add_argument("--runs", type=int, nargs="+", default=[100, 300, 1000])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    results = []
    with temp_valkey() as srv:
        for n in a.runs:
            results.append(asyncio.run(one_load(srv.url, n, a.workers)))
    emit("scale", {"steps_per_run": STEPS, "latency_s": LATENCY, "loads": results})
    plot(
        "scale",
        lambda ax: (
            ax.plot([x["runs"] for x in results], [x["ratio_to_ideal"] for x in results], "o-", color="#c44e52"),
            ax.axhline(1.5, ls="--", color="#999"),
            ax.set_xscale("log"),
            ax.set_xlabel("concurrent agent runs (20 steps, 50 ms per model call)"),
            ax.set_ylabel("completion time / ideal"),
            ax.set_title(f"Scale on one machine ({a.workers} worker processes)"),
        ),
    )


if __name__ == "__main__":
    main()
