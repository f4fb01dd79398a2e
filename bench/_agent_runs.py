"""The agent workload both Conclave benchmarks time, how a client waits for it, and how it is checked.

The workload is the anchors' (``../shared/anchors``): a run of S steps, where a step is one model
call plus the tool call it asks for, and the model answers at step S (S model calls, S - 1 tool
calls). On Conclave the model is the ``sim`` engine in ``tool_loop`` mode; every tool call it asks
for is different (``write`` puts ``notes/step-{i}.md``, or ``lookup`` of ``q{i}``), so the agent's
stuck detector has no reason to end a run early and every run does all its steps.

One clock for both sides of a comparison: a run's time is from the client's submit to the client
seeing ``run.finished`` on the run's event stream (what ``GET /runs/{id}/events`` follows), as
LangGraph's is around ``ainvoke``. The worker's own claim-to-finish time is reported beside it,
labelled ``in_worker``.

``verify`` reads back what every run committed — its status and stop reason, its step records
(model turns and tool calls), its events, its usage and tokens, its workspace — and raises
``BenchCheckFailed`` on the first run that did not do the work.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bench._common import check
from conclave.cluster.engines.sim import count_tokens
from conclave.controller.redis_store import RedisRunStore
from conclave.schema import Budget, Run, RunStatus, StopReason, TaskSpec


@dataclass(frozen=True)
class Workload:
    """S steps per run, L seconds per model call, and the tool each step calls."""

    steps: int = 20
    latency_s: float = 0.05
    tool: str = "write"
    budget: bool = False  # a capped budget: ledger reservations and the <budget> block every turn

    def tool_arguments(self) -> dict[str, str]:
        if self.tool == "write":
            return {"path": "notes/step-{i}.md", "content": "result of step {i}"}
        if self.tool == "lookup":
            return {"q": "q{i}"}
        raise ValueError(f"no workload arguments for tool {self.tool!r}")

    def sim_options(self) -> dict[str, Any]:
        return {
            "mode": "tool_loop",
            "steps": self.steps,
            "tool_name": self.tool,
            "tool_arguments": self.tool_arguments(),
            "latency_s": self.latency_s,
        }

    def spec(self) -> TaskSpec:
        return TaskSpec(
            kind="agent",
            input="go",
            model="sim",
            tools=[self.tool],
            max_steps=self.steps + 5,
            options={"max_tokens": 64, "budget_awareness": self.budget},
            budget=Budget(model_calls=10 * self.steps, output_tokens=10**6) if self.budget else None,
        )

    @property
    def tool_calls(self) -> int:
        return self.steps - 1

    def output_tokens(self) -> int:
        """What the sim charges for one run, by its documented rule (words; a tool call counts its
        name and its JSON arguments)."""
        total = count_tokens("final answer")
        for i in range(self.tool_calls):
            args = {k: v.format(i=i) for k, v in self.tool_arguments().items()}
            total += count_tokens(self.tool) + count_tokens(json.dumps(args))
        return total

    @property
    def files_per_run(self) -> int:
        return self.tool_calls if self.tool == "write" else 0


def config_toml(w: Workload, *, name: str = "sim") -> str:
    """A ``conclave.toml`` with the workload's sim model (JSON strings are valid TOML strings)."""
    o = w.sim_options()
    args = ", ".join(f"{k} = {json.dumps(v)}" for k, v in o["tool_arguments"].items())
    return (
        "[[models]]\n"
        f'name = "{name}"\nengine = "sim"\nmax_ongoing_requests = 100000\n'
        f'options = {{ mode = "tool_loop", steps = {o["steps"]}, tool_name = {json.dumps(o["tool_name"])}, '
        f"tool_arguments = {{ {args} }}, latency_s = {o['latency_s']} }}\n"
    )


@dataclass
class Seen:
    """What the client saw of one run."""

    rid: str
    submitted: float  # perf_counter at the submit call
    finished: float = 0.0  # perf_counter when run.finished was read
    status: str = ""
    stop_reason: str = ""
    events: int = 0


async def watch(r: Any, store: RedisRunStore, seen: Seen, deadline: float) -> None:
    """Follow one run's event stream (blocking reads, as the API's SSE endpoint does) until
    ``run.finished``."""
    key = store.keys.events(seen.rid)
    last = "0-0"
    while time.perf_counter() < deadline:
        try:
            res = await r.xread({key: last}, count=500, block=2000)
        except (RedisTimeoutError, RedisConnectionError):
            # a starved machine can stall a read past the socket timeout; resume after the last
            # event read, as an SSE client reconnects with Last-Event-ID (nothing lost or repeated)
            await asyncio.sleep(0.1)
            continue
        for _, rows in res or []:
            for eid, f in rows:
                last = eid
                seen.events += 1
                if f["type"] == "run.finished":
                    seen.finished = time.perf_counter()
                    data = json.loads(f["data"])
                    seen.status, seen.stop_reason = data.get("status", ""), data.get("stop_reason", "")
                    return


def watch_client(url: str, runs: int) -> Any:
    """A client for following ``runs`` event streams at once: one connection per blocked read, and
    a socket timeout well above the read's block time."""
    from redis.asyncio import BlockingConnectionPool, Redis

    pool = BlockingConnectionPool.from_url(url, max_connections=runs + 8, decode_responses=True, socket_timeout=30)
    return Redis(connection_pool=pool)


async def submit_and_watch(
    store: RedisRunStore, watch_redis: Any, spec: TaskSpec, runs: int, *, timeout_s: float, batch: int = 100
) -> tuple[float, list[Seen]]:
    """Submit ``runs`` runs (``batch`` clients at once) and follow each until it finishes. Returns
    the ``perf_counter`` of the first submit and what was seen of each run."""
    deadline = time.perf_counter() + timeout_s
    watchers: list[asyncio.Task[None]] = []
    seen: list[Seen] = []

    async def one() -> None:
        s = Seen(rid="", submitted=time.perf_counter())
        run = (await store.submit(spec)).run
        s.rid = run.id
        seen.append(s)
        watchers.append(asyncio.ensure_future(watch(watch_redis, store, s, deadline)))

    t0 = time.perf_counter()
    for k in range(0, runs, batch):
        await asyncio.gather(*(one() for _ in range(min(batch, runs - k))))
    await asyncio.gather(*watchers)
    missing = [s.rid for s in seen if not s.finished]
    check(not missing, f"{len(missing)} of {runs} runs not seen finished within {timeout_s:.0f} s: {missing[:5]}")
    return t0, seen


def summary(xs: Sequence[float]) -> dict[str, float]:
    s = sorted(xs)
    return {
        "median": round(statistics.median(s), 4),
        "p95": round(s[min(len(s) - 1, int(0.95 * len(s)))], 4),
        "max": round(s[-1], 4),
    }


@dataclass
class Verified:
    runs: list[Run]
    in_worker_s: list[float] = field(default_factory=list)
    queue_wait_s: list[float] = field(default_factory=list)
    checked: dict[str, Any] = field(default_factory=dict)


async def verify(store: RedisRunStore, seen: Sequence[Seen], w: Workload) -> Verified:
    """Check that every run did all its work and committed it; raises ``BenchCheckFailed``."""
    ids = [s.rid for s in seen]
    runs = await store.get_many(ids)
    check(len(runs) == len(ids), f"{len(ids) - len(runs)} run records missing")
    async with store.redis.pipeline(transaction=False) as pipe:
        for rid in ids:
            pipe.hkeys(store.keys.steps(rid))
            pipe.xrange(store.keys.events(rid))
            pipe.hlen(store.keys.workspace(rid))
        rows = await pipe.execute()
    tokens = w.output_tokens()
    for i, (s, run) in enumerate(zip(seen, runs, strict=True)):
        step_keys, events, files = rows[3 * i], rows[3 * i + 1], rows[3 * i + 2]
        where = f"run {run.id}"
        check(
            run.status == RunStatus.SUCCEEDED and run.stop_reason == StopReason.END_TURN,
            f"{where}: {run.status.value}/{run.stop_reason} ({run.stop_detail}), expected succeeded/end_turn",
        )
        check(
            s.status == "succeeded" and s.stop_reason == "end_turn",
            f"{where}: the client saw run.finished with {s.status}/{s.stop_reason}",
        )
        model_steps = sum(1 for k in step_keys if k.startswith("turn/") and k.endswith("/model"))
        tool_steps = sum(1 for k in step_keys if k.startswith("turn/") and "/tool/" in k)
        check(
            model_steps == w.steps and tool_steps == w.tool_calls,
            f"{where}: committed {model_steps} model turns and {tool_steps} tool calls, "
            f"expected {w.steps} and {w.tool_calls}",
        )
        types = Counter(f["type"] for _, f in events)
        want = {"model.call": w.steps, "tool.call": w.tool_calls, "tool.result": w.tool_calls, "run.finished": 1}
        got = {k: types.get(k, 0) for k in want}
        check(got == want, f"{where}: events {got}, expected {want}")
        levels = [json.loads(f["data"]).get("budget_level") for _, f in events if f["type"] == "agent.message"]
        shown = sum(1 for x in levels if x is not None)
        check(
            shown == (w.steps if w.budget else 0),
            f"{where}: the <budget> block was shown on {shown} of {len(levels)} turns, expected "
            f"{'every turn' if w.budget else 'none (no budget)'}",
        )
        seqs = [int(eid.split("-", 1)[0]) for eid, _ in events]
        check(seqs == list(range(1, len(seqs) + 1)), f"{where}: event ids not 1..{len(seqs)} without gaps")
        check(s.events == len(events), f"{where}: the client read {s.events} events, the stream has {len(events)}")
        u = run.usage
        check(
            u.model_calls == w.steps and u.output_tokens == tokens and u.tool_calls == {w.tool: w.tool_calls},
            f"{where}: usage {u.model_calls} calls, {u.output_tokens} output tokens, tools {u.tool_calls}; "
            f"expected {w.steps}, {tokens}, {{{w.tool!r}: {w.tool_calls}}}",
        )
        check(files == w.files_per_run, f"{where}: {files} workspace files, expected {w.files_per_run}")
        check(run.attempts == 1, f"{where}: {run.attempts} attempts (a worker lost it mid-run)")
        check(run.started_at is not None and run.finished_at is not None, f"{where}: no start or finish time")
    out = Verified(runs=runs)
    for run in runs:
        assert run.started_at is not None and run.finished_at is not None
        out.in_worker_s.append((run.finished_at - run.started_at).total_seconds())
        out.queue_wait_s.append((run.started_at - run.created_at).total_seconds())
    out.checked = {
        "runs_succeeded_end_turn": len(runs),
        "model_turns_per_run": w.steps,
        "tool_calls_per_run": w.tool_calls,
        "output_tokens_per_run": tokens,
        "events_per_run": sorted({s.events for s in seen}),
        "workspace_files_per_run": w.files_per_run,
        "budget_block_every_turn": w.budget,
    }
    return out
