"""Critical-path efficiency of layered ensembles: in-layer concurrency vs one call after another.

For a sample of the published Archon configs, every model the config names is a simulated engine
with a fixed latency L per request (``EnsembleSim``: judge prompts answered in their formats, so no
retries). The same ensemble runs twice through the same executor, metered by a real ledger on a
throwaway Valkey: once as Conclave runs it (a layer's components at once, same-prompt samples in one
request with ``n``), once sequentially as Archon's code does (every component and every sample in
turn). Reported per config: wall times, their ratio, and wall / (layers x L) and wall /
(critical-path rounds x L); a verifier layer needs two rounds (reasoning, then verdict), so for those
configs rounds, not layers, is the floor.

    python bench/bench_ensemble.py [--latency 0.02] [--configs 12] [--max-calls 100] [--search-seeds 10]

Also, unless ``--search-seeds 0``: architecture search on a simulated task whose best architecture
is known (a generator right with probability 0.3 per sample; a judge whose verifier knows the truth
while its ranker and fuser are blind; so the best is 8 samples then a verifier), 16 dev items, a
space of 32 architectures, 20 candidates per search, no latency: how often the Bayesian and the
random search find the known best over several seeds, and the candidates each needed to reach it.

Prints JSON, writes bench/results/ensemble.json and bench/results/ensemble.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from conclave.agents.ensemble import (
    EnsembleConfig,
    Executor,
    LayerResult,
    Problem,
    load_config,
    plan,
    validate_paths,
)
from conclave.agents.ensemble.search import Arch, SearchSpace, architecture_search
from conclave.agents.runtime import RunEnv, open_run
from conclave.budgets.pricing import Pricing
from conclave.cluster.engines.sim import SimEngine
from conclave.cluster.router import LocalRouter
from conclave.controller.redis_server import EmbeddedRedis
from conclave.controller.redis_store import RedisRunStore
from conclave.schema import TaskSpec
from conclave.schema.chat import ChatMessage
from conclave.testing.simjudge import EnsembleSim

RESULTS = Path(__file__).resolve().parent / "results"
CORPUS = Path(os.environ.get("ARCHON_CONFIGS", "/work/shared/compat/archon-configs"))
QUESTION = [ChatMessage(role="user", content="Write a function that returns the n-th Fibonacci number.")]


def pick(max_calls: int, count: int) -> list[Path]:
    """Valid configs with at most ``max_calls`` calls, one per distinct name, spread evenly over the
    range of call counts (deterministic)."""
    checks = [c for c in validate_paths([CORPUS]) if c.ok and c.total_model_calls <= max_calls]
    seen: dict[str, Any] = {}
    for c in sorted(checks, key=lambda c: (c.total_model_calls, c.path)):
        seen.setdefault(c.name or c.path, c)
    pool = list(seen.values())
    if len(pool) <= count:
        return [Path(c.path) for c in pool]
    # A few with verifier layers (two rounds each), the rest spread over the call counts.
    two_round = [c for c in pool if c.critical_path_rounds > c.layers][: max(1, count // 4)]
    rest = [c for c in pool if c not in two_round]
    k = count - len(two_round)
    step = (len(rest) - 1) / max(1, k - 1)
    chosen = [rest[round(i * step)] for i in range(k)] + two_round
    return [Path(c.path) for c in sorted(chosen, key=lambda c: (c.total_model_calls, c.path))]


async def run_once(store: RedisRunStore, cfg: EnsembleConfig, latency: float, sequential: bool) -> tuple[float, int]:
    engines = {m: EnsembleSim({"mode": "echo", "latency_s": latency}, name=m) for m in cfg.models()}
    router = LocalRouter(engines)
    spec = TaskSpec(kind="ensemble", input=QUESTION[0].text())
    run = (await store.submit(spec)).run
    entry = next(e for e in await store.read_new("bench", 100, 100) if e.rid == run.id)
    claim = await store.claim(run.id, owner="o", qid=entry.qid, worker="w", max_attempts=3)
    ctx = await open_run(store, run, owner="o", attempt=claim.attempt, env=RunEnv(router=router, pricing=Pricing()))

    async def step(key: str, fn: Any) -> LayerResult:
        return await ctx.step(key, fn, model=LayerResult)

    t0 = time.perf_counter()
    # As the run kind does: each layer a durable step, its ledger ops committed with it.
    await Executor(cfg, QUESTION, ctx.meter, step=step, emit=ctx.emit, sequential=sequential).run()
    wall = time.perf_counter() - t0
    return wall, sum(e.calls for e in engines.values())


async def search_bench(store: RedisRunStore, seeds: int) -> dict[str, Any]:
    """How often the search finds the known best architecture of a simulated task (see the module)."""
    gen = SimEngine(
        {"mode": "sample", "replies": [{"content": "so 42", "weight": 0.3}, {"content": "so 17", "weight": 0.7}]}
    )
    router = LocalRouter({"g": gen, "j": EnsembleSim(name="j", prefer=r"\b42\b", informed=("verifier",))})
    space = SearchSpace(
        generators=["g"], judges=["j"], samples=[1, 2, 4, 8], ranker_top_k=[None, 1], blocks=[1], max_tokens=16
    )
    best = Arch(generator="g", samples=8, verifier=True, judge="j")
    dev = [Problem(input=f"Item {i}: what is six times seven?", expected="42") for i in range(16)]
    spec = TaskSpec(kind="ensemble", input="architecture search bench")
    run = (await store.submit(spec)).run
    entry = next(e for e in await store.read_new("bench", 100, 100) if e.rid == run.id)
    claim = await store.claim(run.id, owner="o", qid=entry.qid, worker="w", max_attempts=3)
    ctx = await open_run(store, run, owner="o", attempt=claim.attempt, env=RunEnv(router=router, pricing=Pricing()))
    out: dict[str, Any] = {"dev_items": len(dev), "space_size": 32, "candidates_per_search": 20, "seeds": seeds}
    for method in ("bayes", "random"):
        found: list[int | None] = []
        t0 = time.perf_counter()
        for seed in range(seeds):
            rep = await architecture_search(
                dev, space, ctx.meter, method=method, max_candidates=20, n_random=5, seed=seed
            )
            assert rep.best is not None
            at = next((c.index + 1 for c in rep.candidates if c.arch == best), None)
            found.append(at if rep.best.arch == best else None)
        hits = [f for f in found if f is not None]
        out[method] = {
            "found_best": len(hits),
            "median_candidates_to_best": statistics.median(hits) if hits else None,
            "seconds_per_search": round((time.perf_counter() - t0) / seeds, 3),
        }
    return out


async def main(latency: float, count: int, max_calls: int, search_seeds: int = 0) -> dict[str, Any]:
    srv = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="bench-valkey-")))
    srv.start()
    redis = Redis.from_url(srv.url, decode_responses=True)
    store = RedisRunStore(redis, "bench")
    await store.ready()
    rows = []
    try:
        # Warm up: Redis connections, Lua script loading, imports.
        await run_once(store, load_config(pick(max_calls, 1)[0]), latency, sequential=False)
        for path in pick(max_calls, count):
            cfg = load_config(path)
            p = plan(cfg)
            conc, conc_requests = await run_once(store, cfg, latency, sequential=False)
            seq, seq_requests = await run_once(store, cfg, latency, sequential=True)
            layers = len(cfg.layers)
            rows.append(
                {
                    "config": path.name,
                    "layers": layers,
                    "rounds": p.critical_path_rounds,
                    "calls": p.total_model_calls,
                    "requests_concurrent": conc_requests,
                    "requests_sequential": seq_requests,
                    "wall_concurrent_s": round(conc, 4),
                    "wall_sequential_s": round(seq, 4),
                    "speedup": round(seq / conc, 2),
                    "concurrent_per_layer_L": round(conc / (layers * latency), 3),
                    "concurrent_per_round_L": round(conc / (p.critical_path_rounds * latency), 3),
                    "sequential_per_layer_L": round(seq / (layers * latency), 3),
                }
            )
        search = await search_bench(store, search_seeds) if search_seeds > 0 else None
    finally:
        await redis.aclose()
        srv.stop()
    no_verifier = [r for r in rows if r["rounds"] == r["layers"]]
    summary = {
        "configs": len(rows),
        "median_speedup": statistics.median(r["speedup"] for r in rows),
        "max_speedup": max(r["speedup"] for r in rows),
        "median_concurrent_per_round_L": statistics.median(r["concurrent_per_round_L"] for r in rows),
        "max_concurrent_per_round_L": max(r["concurrent_per_round_L"] for r in rows),
        "median_concurrent_per_layer_L_without_two_round_layers": (
            statistics.median(r["concurrent_per_layer_L"] for r in no_verifier) if no_verifier else None
        ),
        "median_sequential_per_layer_L": statistics.median(r["sequential_per_layer_L"] for r in rows),
    }
    return {
        "benchmark": "ensemble",
        "machine": {"python": sys.version.split()[0], "cpus": os.cpu_count(), "platform": platform.platform()},
        "latency_s": latency,
        "summary": summary,
        "rows": rows,
        **({"search": search} if search is not None else {}),
    }


def draw(data: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = data["rows"]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    x = range(len(rows))
    ax.bar(
        [i - 0.2 for i in x], [r["concurrent_per_layer_L"] for r in rows], 0.4, label="Conclave (in-layer concurrency)"
    )
    ax.bar([i + 0.2 for i in x], [r["sequential_per_layer_L"] for r in rows], 0.4, label="sequential (Archon's order)")
    ax.axhline(1.15, color="grey", linestyle="--", linewidth=1, label="goal 1.15")
    ax.set_yscale("log")
    ax.set_xticks(list(x))
    ax.set_xticklabels([f"{r['layers']}L/{r['calls']}c" for r in rows], rotation=45, fontsize=7)
    ax.set_ylabel("wall time / (layers x L)")
    ax.set_title(f"Archon configs on a simulated engine, L = {data['latency_s'] * 1000:.0f} ms per request")
    ax.legend(fontsize=8)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "ensemble.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latency", type=float, default=0.02, help="seconds per simulated request")
    ap.add_argument("--configs", type=int, default=16, help="how many Archon configs")
    ap.add_argument("--max-calls", type=int, default=100, help="skip configs with more calls (sequential is slow)")
    ap.add_argument("--search-seeds", type=int, default=10, help="architecture-search runs per method (0: skip)")
    args = ap.parse_args()
    result = asyncio.run(main(args.latency, args.configs, args.max_calls, args.search_seeds))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ensemble.json").write_text(json.dumps(result, indent=2))
    draw(result)
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
