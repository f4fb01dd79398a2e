"""The benchmarks' own checks: a figure can only come from work that happened.

A run of the scale workload does all its steps and passes; a run the stuck detector ends early
(what ``python -m bench scale`` timed before: the same call every turn) fails the checks; the
LangGraph driver counts what the checkpointer stored; CPU of reaped children is counted; a py-spy
profile is summarised by self and inclusive time.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bench import _procs
from bench._agent_runs import Workload, submit_and_watch, verify, watch_client
from bench._common import BenchCheckFailed
from bench._langgraph import checkpoints_per_run, run_anchor
from bench._profile import summarise
from conclave.cluster.config import ModelSpec
from conclave.config import Settings
from conclave.controller.redis_server import EmbeddedRedis
from conclave.controller.redis_store import RedisRunStore
from conclave.controller.worker import Worker, local_router


class _Cluster:
    def __init__(self, url: str, prefix: str) -> None:
        self.url, self.prefix = url, prefix
        self.r = Redis.from_url(url, decode_responses=True)
        self.store = RedisRunStore(self.r, prefix)
        self.watch = watch_client(url, 16)

    async def run(self, model_options: dict[str, Any], w: Workload, runs: int) -> Any:
        settings = Settings(
            key_prefix=self.prefix,
            models=[ModelSpec(name="sim", engine="sim", options=model_options)],
            lease_seconds=30,
        )
        worker = Worker(settings, local_router(settings), redis_url=self.url, name=f"{self.prefix}-w")
        task = asyncio.ensure_future(worker.run())
        try:
            _, seen = await submit_and_watch(self.store, self.watch, w.spec(), runs, timeout_s=60)
        finally:
            worker.stop()
            await task
        return seen


@pytest.fixture
async def cluster(redis_server: EmbeddedRedis, prefix: str) -> AsyncIterator[_Cluster]:
    c = _Cluster(redis_server.url, prefix)
    await c.store.ready()
    yield c
    await c.watch.aclose()
    await c.r.aclose()


async def test_a_run_of_the_scale_workload_does_every_step_and_passes_the_checks(cluster: _Cluster) -> None:
    w = Workload(steps=6, latency_s=0.0)
    seen = await cluster.run(w.sim_options(), w, runs=3)
    out = await verify(cluster.store, seen, w)
    assert out.checked["model_turns_per_run"] == 6 and out.checked["tool_calls_per_run"] == 5
    assert out.checked["workspace_files_per_run"] == 5 and out.checked["runs_succeeded_end_turn"] == 3
    assert out.checked["output_tokens_per_run"] == w.output_tokens() == 2 + 5 * 8


async def test_a_run_the_stuck_detector_ended_early_fails_the_checks(cluster: _Cluster) -> None:
    w = Workload(steps=6, latency_s=0.0)
    same_call = {**w.sim_options(), "tool_arguments": {"path": "a.md", "content": "x"}}
    seen = await cluster.run(same_call, w, runs=1)
    # a stuck run ends failed (honest endings, docs/steering.md)
    with pytest.raises(BenchCheckFailed, match=r"failed/stuck .*expected succeeded/end_turn"):
        await verify(cluster.store, seen, w)


async def test_a_run_without_its_budget_block_fails_the_budget_check(cluster: _Cluster) -> None:
    plain, budgeted = Workload(steps=4, latency_s=0.0), Workload(steps=4, latency_s=0.0, budget=True)
    seen = await cluster.run(plain.sim_options(), plain, runs=1)
    await verify(cluster.store, seen, plain)
    with pytest.raises(BenchCheckFailed, match=r"<budget> block was shown on 0 of 4 turns"):
        await verify(cluster.store, seen, budgeted)


def test_the_langgraph_driver_counts_every_run_and_checkpoint_it_stored() -> None:
    (row,) = run_anchor([2], 3, 0.001, ["memory"])
    assert row["saver"] == "memory" and row["runs"] == 2
    assert row["checkpoint_threads"] == 2 and row["checkpoints"] == 2 * checkpoints_per_run(3)
    assert row["total_cpu_seconds"] == row["cpu_seconds"]


def test_tree_cpu_counts_the_time_of_children_that_already_exited() -> None:
    burn = "x = 0\nfor i in range(5 * 10**6):\n    x += i\n"
    parent = (
        "import subprocess, sys, time\n"
        f"subprocess.run([sys.executable, '-c', {burn!r}])\n"
        "print('reaped', flush=True)\n"
        "time.sleep(60)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "reaped"
        assert _procs.children(p.pid) == []
        assert _procs.tree_cpu(p.pid) - _procs.cpu(p.pid) > 0.05, "the exited child's CPU is missing"
    finally:
        p.kill()
        p.wait()


def test_a_profile_is_summarised_by_self_and_inclusive_time(tmp_path: Path) -> None:
    raw = tmp_path / "p.txt"
    raw.write_text(
        "main (conclave/controller/worker.py:10);step (conclave/agents/context.py:90);dumps (json/__init__.py:231) 6\n"
        "main (conclave/controller/worker.py:10);step (conclave/agents/context.py:91) 3\n"
        "main (conclave/controller/worker.py:10);_run_once (asyncio/base_events.py:1922) 1\n"
    )
    s = summarise(raw)
    assert s["samples"] == 10
    assert s["top_self"][0] == {"frame": "dumps (json/__init__.py)", "percent": 60.0}
    assert {"frame": "step (conclave/agents/context.py)", "percent": 30.0} in s["top_self"]
    incl = {x["frame"]: x["percent"] for x in s["conclave_inclusive"]}
    assert incl == {"main (conclave/controller/worker.py)": 100.0, "step (conclave/agents/context.py)": 90.0}
