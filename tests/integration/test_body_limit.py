"""The body limit holds on the real API for bodies without a Content-Length: a chunked 20 MB task is a
413 (not read whole, not a 422), and the server process's memory stays flat during a 200 MB
chunked upload (its resident set is sampled from /proc while the upload runs)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conclave.controller.redis_server import EmbeddedRedis, free_port
from tests._upload import upload

ROOT = Path(__file__).resolve().parents[2]
MB = 1024 * 1024


def _rss(pid: int) -> int:
    """Resident set of ``pid`` in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@contextlib.contextmanager
def api_process(redis_url: str, prefix: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration._api_server", "--redis-url", redis_url, "--prefix", prefix]
        + ["--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if proc.poll() is not None:
                raise RuntimeError(f"the API process exited with {proc.returncode}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError("the API process did not come up")
        yield base, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def api(redis_server: EmbeddedRedis) -> Iterator[tuple[str, int]]:
    with api_process(redis_server.url, "bodylimit") as served:
        yield served


def test_a_chunked_20_mb_task_is_refused_with_413(api: tuple[str, int]) -> None:
    base, _ = api
    r = upload(base, "/v1/runs", 20 * MB)
    assert r.status == 413, (r.status, r.body[:300])
    assert r.json()["error"]["code"] == "body_too_large"
    r = upload(base, "/v1/chat/completions", 20 * MB)
    assert r.status == 413 and r.json()["error"]["type"] == "invalid_request_error"
    # The service is unharmed and a normal task still goes in.
    ok = httpx.post(f"{base}/v1/runs", json={"kind": "chat", "input": "hello"}, timeout=10)
    assert ok.status_code == 201, ok.text


def test_memory_stays_bounded_during_a_200_mb_chunked_upload(api: tuple[str, int]) -> None:
    base, pid = api
    upload(base, "/v1/runs", 2 * MB)  # warm the path once, so the baseline includes it
    baseline = _rss(pid)
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss(pid))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        r = upload(base, "/v1/runs", 200 * MB, chunk=256 * 1024)
    finally:
        done.set()
        sampler.join(5)
    peak = max(peak, _rss(pid))
    growth = peak - baseline
    print(
        f"\nbody limit: 200 MB chunked upload, server RSS {baseline / MB:.1f} MB -> peak {peak / MB:.1f} MB "
        f"(+{growth / MB:.1f} MB); the client got {r.sent / MB:.1f} MB out before the 413"
    )
    assert r.status == 413
    assert growth < 64 * MB, f"the server grew by {growth / MB:.1f} MB during the upload"
    assert r.sent < 100 * MB  # it stopped reading; the upload did not go through
