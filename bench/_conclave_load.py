"""Conclave under load: N concurrent agent runs on worker processes and one Valkey, measured and checked.

Each load gets a fresh Valkey (AOF, ``appendfsync always``: every commit is on disk before it is
acknowledged, as PostgreSQL's default ``synchronous_commit`` is) and fresh worker processes (one
asyncio loop each, in-process sim engines), which warm up on a few runs before the clock starts.
The client is this process: it submits through the run store (what the API's submit calls) and
follows every run's event stream until ``run.finished`` (what the API's SSE endpoint does).

Measured per load: completion time on the client's clock, the runs' in-worker (claim-to-finish)
times, CPU seconds of every process (each worker, Valkey, the client), Valkey memory per finished
run (``MEMORY USAGE`` of every key of the run, and the ``used_memory`` delta), the workers' peak
memory growth per run in flight; optionally a py-spy profile of one worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import _procs
from bench._agent_runs import Workload, config_toml, submit_and_watch, summary, verify, watch_client
from bench._common import ROOT, check, log, temp_valkey


class Workers:
    """Worker processes (``python -m conclave.controller.worker``) on one queue."""

    def __init__(self, url: str, prefix: str, n: int, concurrency: int, w: Workload) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-workers-"))
        cfg = self.tmp / "conclave.toml"
        cfg.write_text(config_toml(w))
        env = dict(
            os.environ,
            PYTHONPATH=str(ROOT),
            CONCLAVE_KEY_PREFIX=prefix,
            CONCLAVE_WORKER_CONCURRENCY=str(concurrency),
            CONCLAVE_LOG_LEVEL="WARNING",
            CONCLAVE_LEASE_SECONDS="60",
            CONCLAVE_HOME=str(self.tmp),
        )
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "conclave.controller.worker", "--config", str(cfg), "--redis-url", url]
                + ["--name", f"{prefix}-w{i}"],
                env=env,
            )
            for i in range(n)
        ]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    async def ready(self, r: Any, queue_key: str, timeout_s: float = 90.0) -> None:
        """Wait until every worker reads the queue (it shows up as a consumer of the group)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for p in self.procs:
                check(p.poll() is None, f"worker process {p.pid} exited with {p.returncode} while starting")
            try:
                consumers = await r.xinfo_consumers(queue_key, "workers")
            except Exception:
                consumers = []
            if len(consumers) >= len(self.procs):
                return
            await asyncio.sleep(0.1)
        check(False, f"workers not reading the queue after {timeout_s:.0f} s")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


class _Profiler:
    """py-spy recording one worker (raw collapsed stacks), stopped with SIGINT when the load ends."""

    def __init__(self, pid: int, out: Path, rate: int = 200) -> None:
        exe = Path(sys.executable).with_name("py-spy")
        check(exe.exists(), f"py-spy is not installed next to {sys.executable} (pip install py-spy)")
        self.out = out
        self.proc = subprocess.Popen(
            [str(exe), "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate), "--nonblocking"]
            + ["--output", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        check(self.out.exists(), f"py-spy wrote no profile: {err.decode(errors='replace')[-500:]}")


async def _run_key_bytes(r: Any, prefix: str, rids: list[str]) -> dict[str, int]:
    """Valkey's ``MEMORY USAGE`` (exact: ``SAMPLES 0``) of every key of these runs, by kind of key
    (``record``, ``:ev`` events, ``:steps``, ``:ws`` workspace, ``:ledger``, ...), summed."""
    by: dict[str, int] = {}
    for rid in rids:
        async for k in r.scan_iter(match=f"{prefix}:run:{rid}*", count=1000):
            kind = k.split(rid, 1)[1] or "record"
            by[kind] = by.get(kind, 0) + int(await r.memory_usage(k, samples=0) or 0)
    return by


async def run_load(
    w: Workload,
    runs: int,
    workers: int,
    *,
    profile: Path | None = None,
    timeout_s: float = 900.0,
    tag: str = "",
) -> dict[str, Any]:
    """One load: ``runs`` concurrent runs of ``w`` on ``workers`` worker processes; checked."""
    from conclave.controller.redis_store import RedisRunStore
    from conclave.controller.worker import connect

    prefix = f"sc{runs}w{workers}{tag}"
    with temp_valkey() as srv:
        assert srv.proc is not None
        vpid = srv.proc.pid
        r = connect(srv.url)
        store = RedisRunStore(r, prefix, binary=connect(srv.url, decode=False))
        await store.ready()
        pool = Workers(srv.url, prefix, workers, max(1, -(-runs // workers)), w)
        watch_redis = watch_client(srv.url, runs)
        prof: _Profiler | None = None
        try:
            await pool.ready(r, store.keys.queue)
            # Warm-up (imports, scripts, connections) on every worker's first runs; checked too.
            _, warm = await submit_and_watch(store, watch_redis, w.spec(), 4 * workers, timeout_s=120)
            await verify(store, warm, w)
            mem0 = int((await r.info("memory"))["used_memory"])
            base_rss = [_procs.rss(p) for p in pool.pids]
            peak_rss = list(base_rss)
            cpu0 = [_procs.cpu(p) for p in pool.pids]
            v0, c0 = _procs.cpu(vpid), _procs.self_cpu()
            if profile is not None:
                prof = _Profiler(pool.pids[0], profile)
                await asyncio.sleep(0.5)  # py-spy attaches before the load starts

            async def sample_rss() -> None:
                while True:
                    for i, p in enumerate(pool.pids):
                        with contextlib.suppress(OSError):
                            peak_rss[i] = max(peak_rss[i], _procs.rss(p))
                    await asyncio.sleep(0.2)

            sampler = asyncio.ensure_future(sample_rss())
            try:
                t0, seen = await submit_and_watch(store, watch_redis, w.spec(), runs, timeout_s=timeout_s)
            finally:
                sampler.cancel()
            t_end = max(s.finished for s in seen)
            cpu = [_procs.cpu(p) - c for p, c in zip(pool.pids, cpu0, strict=True)]
            valkey_cpu, client_cpu = _procs.cpu(vpid) - v0, _procs.self_cpu() - c0
            if prof is not None:
                prof.stop()
            await watch_redis.aclose()  # its connections' buffers are not run data
            await asyncio.sleep(0.2)
            mem1 = int((await r.info("memory"))["used_memory"])
            checked = await verify(store, seen, w)
            sample = [s.rid for s in seen[: min(100, runs)]]
            key_bytes = await _run_key_bytes(r, prefix, sample)
        finally:
            if prof is not None and prof.proc.poll() is None:
                prof.proc.kill()
            pool.stop()
            await r.aclose()
    elapsed = t_end - t0
    steps = runs * w.steps
    workers_cpu = sum(cpu)
    starts = [x.started_at.timestamp() for x in checked.runs if x.started_at]
    ends = [x.finished_at.timestamp() for x in checked.runs if x.finished_at]
    ideal = w.steps * w.latency_s
    out = {
        "runs": runs,
        "workers": workers,
        "steps_per_run": w.steps,
        "latency_s": w.latency_s,
        "ideal_s": ideal,
        "completion_s": round(elapsed, 3),
        "ratio_to_ideal": round(elapsed / ideal, 2),
        "steps_per_second": round(steps / elapsed, 1),
        "client_latency_per_run_s": summary([s.finished - s.submitted for s in seen]),
        "in_worker_per_run_s": summary(checked.in_worker_s),
        "in_worker_span_s": round(max(ends) - min(starts), 3),
        "queue_wait_per_run_s": summary(checked.queue_wait_s),
        "cpu_seconds": {
            "workers": [round(c, 2) for c in cpu],
            "workers_total": round(workers_cpu, 2),
            "valkey": round(valkey_cpu, 2),
            "client": round(client_cpu, 2),
        },
        "worker_cpu_ms_per_step": round(1000 * workers_cpu / steps, 3),
        "durable_steps_per_cpu_second": round(steps / (workers_cpu + valkey_cpu), 1),
        "steps_per_worker_cpu_second": round(steps / workers_cpu, 1),
        "valkey_bytes_per_run": {
            "memory_usage_of_run_keys": sum(key_bytes.values()) // len(sample),
            "memory_usage_by_key": {k: v // len(sample) for k, v in sorted(key_bytes.items())},
            "used_memory_delta": (mem1 - mem0) // runs,
        },
        "worker_rss_bytes_per_active_run": (sum(peak_rss) - sum(base_rss)) // runs,
        "checked": checked.checked,
    }
    log(
        f"conclave {runs} runs x {w.steps} steps on {workers} workers: {elapsed:.2f} s "
        f"({out['ratio_to_ideal']}x ideal), workers {workers_cpu:.1f} cpu-s, valkey {valkey_cpu:.1f} cpu-s"
    )
    return out
