"""Critical-path efficiency of layered ensembles: in-layer concurrency vs one call after another.

For a sample of the published Archon configs, every model the config names is a simulated engine
(``EnsembleSim``: judge prompts answered in their formats, so no retries) with the sim's batching
cost model, the same on both sides: every generated sample is charged, in vLLM-style batches of at
most ``--max-batch`` samples, ``L + per_token x (output tokens of the batch's longest sample)``, one
batch at a time per model (see ``conclave/cluster/engines/sim.py``). An ``n`` request and n
concurrent requests cost the same; batching is what concurrency buys, on either side. The same
ensemble runs twice through the same executor, metered by a real ledger on a throwaway Valkey: once
as Conclave runs it (a layer's components at once, same-prompt samples in one request with ``n``),
once sequentially as Archon's code does (every component and every sample in turn). Reported per
config: wall times, their ratio, wall / (layers x L) and wall / (critical-path rounds x L) (a
verifier layer needs two rounds, reasoning then verdict, so for those configs rounds, not layers,
is the floor; the per-token term adds to every round), wall / the time some engine was busy
(what orchestration adds on top of the engines' own work), and the engine-seconds each side used.
Every run is checked: the samples generated and requests sent equal the config's plan, the ledger
committed one model call per request, and every layer committed as a durable step.

    python -m bench ensemble [--latency 0.02] [--per-token 0.0005] [--configs 16] [--max-calls 100]
                             [--search-seeds 10]

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
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench._common import check
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
from conclave.core.ledger import ROOT
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


@dataclass
class Side:
    """One execution of a config and what it did."""

    wall: float
    requests: int
    samples: int
    batches: int
    engine_seconds: float
    busy_seconds: float
    ledger_calls: int
    layers_committed: int


def busy(intervals: list[tuple[float, float]]) -> float:
    """How long at least one engine was running a batch (the union of the intervals)."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def sim_options(latency: float, per_token: float, max_batch: int, window: float) -> dict[str, Any]:
    return {
        "mode": "echo",
        "latency_s": latency,
        "batching": {"window_s": window, "max_batch": max_batch, "per_token_s": per_token},
    }


async def run_once(store: RedisRunStore, cfg: EnsembleConfig, options: dict[str, Any], sequential: bool) -> Side:
    engines = {m: EnsembleSim(options, name=m) for m in cfg.models()}
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
    await ctx.flush()
    committed = await store.load_steps(run.id)
    snap = await ctx.ledger.snapshot()
    for e in engines.values():
        await e.close()
    return Side(
        wall=wall,
        requests=sum(e.calls for e in engines.values()),
        samples=sum(e.batched_samples for e in engines.values()),
        batches=sum(e.batch_count for e in engines.values()),
        engine_seconds=sum(b.seconds for e in engines.values() for b in e.batches),
        busy_seconds=busy([(b.started, b.started + b.seconds) for e in engines.values() for b in e.batches]),
        ledger_calls=snap.used.get((ROOT, "model_calls"), 0),
        layers_committed=sum(1 for k in committed if k.startswith("layer/")),
    )


def check_side(name: str, side: Side, cfg: EnsembleConfig, *, sequential: bool) -> None:
    """What one execution must have done: the plan's samples, one request per sample when
    sequential (the plan's requests otherwise), a ledger call per request, every layer committed."""
    p = plan(cfg)
    how = "sequential" if sequential else "concurrent"
    want_requests = p.total_model_calls if sequential else p.total_requests
    check(
        side.samples == p.total_model_calls,
        f"{name} ({how}): {side.samples} samples generated, the plan draws {p.total_model_calls}",
    )
    check(
        side.requests == want_requests,
        f"{name} ({how}): {side.requests} requests sent, expected {want_requests}",
    )
    check(
        side.ledger_calls == side.requests,
        f"{name} ({how}): the ledger committed {side.ledger_calls} model calls for {side.requests} requests",
    )
    check(
        side.layers_committed == len(cfg.layers),
        f"{name} ({how}): {side.layers_committed} layers committed, the config has {len(cfg.layers)}",
    )


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
            check(
                rep.best is not None and rep.stop == "completed" and len(rep.candidates) == 20,
                f"{method} search, seed {seed}: stopped {rep.stop} after {len(rep.candidates)} of 20 candidates",
            )
            check(
                all(len(c.scores) == len(dev) and c.unjudged == 0 for c in rep.candidates),
                f"{method} search, seed {seed}: a candidate was not scored on all {len(dev)} dev items",
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


async def run(
    latency: float,
    count: int,
    max_calls: int,
    search_seeds: int = 0,
    *,
    per_token: float = 0.0005,
    max_batch: int = 256,
    window: float = 0.002,
) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="bench-valkey-"))
    srv = EmbeddedRedis(data)
    srv.start()
    redis = Redis.from_url(srv.url, decode_responses=True)
    store = RedisRunStore(redis, "bench")
    await store.ready()
    options = sim_options(latency, per_token, max_batch, window)
    rows: list[dict[str, Any]] = []
    try:
        # Warm up: Redis connections, Lua script loading, imports.
        await run_once(store, load_config(pick(max_calls, 1)[0]), options, sequential=False)
        for path in pick(max_calls, count):
            cfg = load_config(path)
            p = plan(cfg)
            conc = await run_once(store, cfg, options, sequential=False)
            check_side(path.name, conc, cfg, sequential=False)
            seq = await run_once(store, cfg, options, sequential=True)
            check_side(path.name, seq, cfg, sequential=True)
            layers = len(cfg.layers)
            rows.append(
                {
                    "config": path.name,
                    "layers": layers,
                    "rounds": p.critical_path_rounds,
                    "calls": p.total_model_calls,
                    "requests_concurrent": conc.requests,
                    "requests_sequential": seq.requests,
                    "batches_concurrent": conc.batches,
                    "batches_sequential": seq.batches,
                    "engine_seconds_concurrent": round(conc.engine_seconds, 4),
                    "engine_seconds_sequential": round(seq.engine_seconds, 4),
                    "wall_concurrent_s": round(conc.wall, 4),
                    "wall_sequential_s": round(seq.wall, 4),
                    "speedup": round(seq.wall / conc.wall, 2),
                    "concurrent_wall_over_busy": round(conc.wall / conc.busy_seconds, 3),
                    "sequential_wall_over_busy": round(seq.wall / seq.busy_seconds, 3),
                    "concurrent_per_layer_L": round(conc.wall / (layers * latency), 3),
                    "concurrent_per_round_L": round(conc.wall / (p.critical_path_rounds * latency), 3),
                    "sequential_per_layer_L": round(seq.wall / (layers * latency), 3),
                }
            )
        search = await search_bench(store, search_seeds) if search_seeds > 0 else None
    finally:
        await redis.aclose()
        srv.stop()
        shutil.rmtree(data, ignore_errors=True)
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
        "median_concurrent_wall_over_busy": statistics.median(r["concurrent_wall_over_busy"] for r in rows),
        "median_sequential_wall_over_busy": statistics.median(r["sequential_wall_over_busy"] for r in rows),
        "median_engine_seconds_sequential_over_concurrent": statistics.median(
            r["engine_seconds_sequential"] / r["engine_seconds_concurrent"] for r in rows
        ),
    }
    return {
        "benchmark": "ensemble",
        "machine": {"python": sys.version.split()[0], "cpus": os.cpu_count(), "platform": platform.platform()},
        "latency_s": latency,
        "cost_model": {
            "per_sample": "batch seconds = latency_s + per_token_s x longest sample's output tokens",
            **options["batching"],
            "latency_s": latency,
        },
        "summary": summary,
        "rows": rows,
        **({"search": search} if search is not None else {}),
    }


def draw(data: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = data["rows"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.5))
    x = range(len(rows))
    labels = [f"{r['layers']}L/{r['calls']}c" for r in rows]
    a.bar(
        [i - 0.2 for i in x], [r["concurrent_per_layer_L"] for r in rows], 0.4, label="Conclave (in-layer concurrency)"
    )
    a.bar([i + 0.2 for i in x], [r["sequential_per_layer_L"] for r in rows], 0.4, label="sequential (Archon's order)")
    a.set_yscale("log")
    a.set_ylabel("wall time / (layers x L)")
    cm = data["cost_model"]
    a.set_title(
        f"Archon configs, sim batches: L = {cm['latency_s'] * 1000:.0f} ms + "
        f"{cm['per_token_s'] * 1000:g} ms/token (longest sample)",
        fontsize=9,
    )
    b.bar([i - 0.2 for i in x], [r["concurrent_wall_over_busy"] for r in rows], 0.4, label="Conclave")
    b.bar([i + 0.2 for i in x], [r["sequential_wall_over_busy"] for r in rows], 0.4, label="sequential")
    b.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    b.set_ylabel("wall time / time some engine was busy")
    b.set_title("Orchestration overhead over the engines' own time", fontsize=9)
    for ax in (a, b):
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels, rotation=45, fontsize=7)
        ax.legend(fontsize=8)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "ensemble.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from bench._common import machine

    ap = argparse.ArgumentParser(prog="python -m bench ensemble", description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--latency", type=float, default=0.02, help="seconds per batch before its tokens (L)")
    ap.add_argument(
        "--per-token", type=float, default=0.0005, help="seconds per output token of a batch's longest sample"
    )
    ap.add_argument("--max-batch", type=int, default=256, help="samples per batch at most")
    ap.add_argument("--window", type=float, default=0.002, help="how long an idle engine waits for company")
    ap.add_argument("--configs", type=int, default=16, help="how many Archon configs")
    ap.add_argument("--max-calls", type=int, default=100, help="skip configs with more calls (sequential is slow)")
    ap.add_argument("--search-seeds", type=int, default=10, help="architecture-search runs per method (0: skip)")
    args = ap.parse_args(argv)
    result = asyncio.run(
        run(
            args.latency,
            args.configs,
            args.max_calls,
            args.search_seeds,
            per_token=args.per_token,
            max_batch=args.max_batch,
            window=args.window,
        )
    )
    result["machine"] = machine()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ensemble.json").write_text(json.dumps(result, indent=2))
    draw(result)
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
