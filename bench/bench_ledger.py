"""Ledger throughput and overhead.

1. Reservations per second (reserve + commit through the step-commit script) from 1, 10 and 100
   concurrent agents on one run.
2. The added latency per model call: a sim-engine call through the Meter with a capped budget vs the
   same call straight to the engine, measured side by side; reported as a ratio.

Checked: the ledger's committed totals equal the cycles counted (one model call, 90 input and 40
output tokens each) with nothing left reserved, and every metered call reached the engine and was
committed once.

    python -m bench ledger [--seconds 3] [--calls 300]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from redis.asyncio import Redis

from bench._common import check, emit, plot, temp_valkey
from conclave.agents.meter import Meter
from conclave.budgets.caps import install_budget
from conclave.budgets.pricing import Pricing
from conclave.cluster.engines.sim import SimEngine
from conclave.cluster.router import LocalRouter
from conclave.controller.redis_store import RedisRunStore
from conclave.core.ledger import ROOT, RunLedger
from conclave.core.pending import LedgerOp, PendingCommit
from conclave.schema import Budget, TaskSpec
from conclave.schema.chat import ChatMessage, ChatRequest

BIG = 10**15


async def _setup(url: str, prefix: str) -> tuple[RedisRunStore, RunLedger]:
    r = Redis.from_url(url, decode_responses=True, max_connections=200)
    store = RedisRunStore(r, prefix, binary=Redis.from_url(url))
    await store.ready()
    run = (await store.submit(TaskSpec(kind="chat", input="bench"))).run
    qid = (await store.read_new("bench", 10, 100))[0].qid
    await store.claim(run.id, owner="o", qid=qid, worker="bench", max_attempts=3)
    ledger = RunLedger(store, run.id, "o")
    await install_budget(ledger, Budget(input_tokens=BIG, output_tokens=BIG, model_calls=BIG))
    return store, ledger


async def throughput(url: str, agents: int, seconds: float) -> float:
    store, ledger = await _setup(url, f"bt{agents}")
    done = 0
    end = time.perf_counter() + seconds

    async def agent() -> None:
        nonlocal done
        while time.perf_counter() < end:
            res, _ = await ledger.reserve("run", {"input_tokens": 100, "output_tokens": 50, "model_calls": 1})
            op = RunLedger.commit_op(res, ROOT, {"input_tokens": 90, "output_tokens": 40, "model_calls": 1})
            await store.commit(ledger.rid, ledger.owner, PendingCommit(ledger=[op]))
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(agent() for _ in range(agents)))
    rate = done / (time.perf_counter() - t0)
    await _check_totals(ledger, f"{agents} agents", calls=done, input_tokens=90 * done, output_tokens=40 * done)
    return rate


async def _check_totals(ledger: RunLedger, where: str, *, calls: int, **tokens: int) -> None:
    snap = await ledger.snapshot()
    used = {k[1]: v for k, v in snap.used.items() if k[0] == ROOT}
    want = {"model_calls": calls, **tokens}
    got = {k: used.get(k, 0) for k in want}
    check(got == want, f"ledger ({where}): committed {got}, expected {want}")
    held = {k: v for k, v in snap.reserved.items() if v}
    check(not held, f"ledger ({where}): reservations still held after every commit: {held}")


class _Sink:
    def __init__(self, store: RedisRunStore, ledger: RunLedger) -> None:
        self.store, self.ledger = store, ledger

    async def ledger_op(self, op: LedgerOp) -> None:
        await self.store.commit(self.ledger.rid, self.ledger.owner, PendingCommit(ledger=[op]))


async def overhead(url: str, calls: int) -> dict[str, float]:
    store, ledger = await _setup(url, "bo")
    engine = SimEngine({"mode": "echo", "latency_s": 0.002}, name="sim")
    meter = Meter(ledger=ledger, pricing=Pricing(), router=LocalRouter({"sim": engine}), sink=_Sink(store, ledger))
    req = ChatRequest(model="sim", messages=[ChatMessage(role="user", content="one two three four")], max_tokens=16)
    direct, metered = [], []
    for _ in range(calls):  # interleaved, so both see the same machine state
        t = time.perf_counter()
        await engine.chat(req)
        direct.append(time.perf_counter() - t)
        t = time.perf_counter()
        await meter.chat(req, model="sim")
        metered.append(time.perf_counter() - t)
    check(engine.calls == 2 * calls, f"the engine saw {engine.calls} calls, expected {2 * calls}")
    snap = await ledger.snapshot()
    committed = snap.used.get((ROOT, "model_calls"), 0)
    check(committed == calls, f"the ledger committed {committed} metered calls, expected {calls}")
    d, m = sorted(direct)[calls // 2], sorted(metered)[calls // 2]
    return {"direct_ms_median": d * 1000, "metered_ms_median": m * 1000, "ratio": m / d, "added_ms": (m - d) * 1000}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench ledger")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--calls", type=int, default=300)
    a = p.parse_args(argv)
    with temp_valkey() as srv:
        tput = {n: asyncio.run(throughput(srv.url, n, a.seconds)) for n in (1, 10, 100)}
        ov = asyncio.run(overhead(srv.url, a.calls))
    emit("ledger", {"reservations_per_s": tput, "model_call_overhead": ov})
    plot(
        "ledger",
        lambda ax: (
            ax.bar([str(k) for k in tput], list(tput.values()), color="#4c72b0"),
            ax.set_xlabel("concurrent agents"),
            ax.set_ylabel("reserve+commit per second"),
            ax.set_title(f"Ledger throughput (metered sim call: {ov['ratio']:.2f}x a direct call)"),
        ),
    )


if __name__ == "__main__":
    main()
