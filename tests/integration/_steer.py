"""Helpers of the steering tests: the sim model as a script, worker processes with it, the API over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from conclave.api.app import create_app
from conclave.config import Settings

from ._helpers import TEST_KINDS, serve_http, sim_settings

ROOT = Path(__file__).resolve().parents[2]


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


def sim_model(*replies: dict[str, Any], mode: str = "script", **options: Any) -> dict[str, Any]:
    """The ``sim`` model playing ``replies`` (script: one per assistant turn in the conversation; rules:
    the first whose ``when`` matches the last message)."""
    return {"name": "sim", "engine": "sim", "options": {"mode": mode, "replies": list(replies), **options}}


def settings_for(prefix: str, model: dict[str, Any], **kw: Any) -> Settings:
    return sim_settings(prefix, models=[model], **kw)


def _toml(v: Any) -> str:
    """A TOML value (inline tables and arrays: JSON's strings and numbers are TOML's too)."""
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[ " + ", ".join(_toml(x) for x in v) + " ]"
    if isinstance(v, bool):
        return "true" if v else "false"
    return json.dumps(v)


def write_config(path: Path, model: dict[str, Any]) -> Path:
    path.write_text("".join(f"{k} = {_toml(v)}\n" for k, v in {"models": [model]}.items()))
    return path


@contextlib.contextmanager
def worker_process(
    url: str, prefix: str, name: str, tmp: Path, model: dict[str, Any], effects: Path, **env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A worker as its own process (so a test can SIGKILL it), serving ``model``."""
    cfg = write_config(tmp / f"{name}.toml", model)
    proc_env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        CONCLAVE_KEY_PREFIX=prefix,
        CONCLAVE_LEASE_SECONDS="1",
        CONCLAVE_MAX_ATTEMPTS="3",
        CONCLAVE_KINDS=",".join(f"{k}={v}" for k, v in TEST_KINDS.items()),
        CONCLAVE_HOME=str(tmp / "home"),
        CONCLAVE_TEST_EFFECTS=str(effects),
        **env,
    )
    log = (tmp / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "conclave.controller.worker", "--config", str(cfg), "--redis-url", url, "--name", name],
        env=proc_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def kill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@contextlib.asynccontextmanager
async def http_api(settings: Settings, url: str) -> AsyncIterator[httpx.AsyncClient]:
    with serve_http(create_app(settings, url)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as c:
            yield c


async def until(api: httpx.AsyncClient, rid: str, *statuses: str, within: float = 60) -> dict[str, Any]:
    """Poll the run until its status is one of ``statuses`` (workers in other processes change it)."""
    end = time.monotonic() + within
    run: dict[str, Any] = {}
    while time.monotonic() < end:
        run = (await api.get(f"/v1/runs/{rid}")).json()
        if run["status"] in statuses:
            return run
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {rid} never became {statuses}: {run}")


async def events(api: httpx.AsyncClient, rid: str) -> list[dict[str, Any]]:
    """Every event of the run so far (the SSE stream without following)."""
    out = []
    async with api.stream("GET", f"/v1/runs/{rid}/events", params={"follow": "false"}) as r:
        async for line in r.aiter_lines():
            if line.startswith("data:"):
                out.append(json.loads(line[5:]))
    return out


async def wait_for(cond: Callable[[], bool | Awaitable[bool]], within: float = 60) -> None:
    """Poll ``cond`` (other processes change what it looks at, so there is nothing to await instead)."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        got = cond()
        if await got if inspect.isawaitable(got) else got:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")
