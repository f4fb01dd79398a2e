"""Chaos: a Ray node is removed with runs in flight (multi-node cluster on loopback, in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conclave.controller.redis_server import EmbeddedRedis

pytestmark = [pytest.mark.slow, pytest.mark.redis]
ROOT = Path(__file__).resolve().parents[2]


def test_runs_resume_on_surviving_nodes_after_a_node_is_lost(redis_server: EmbeddedRedis, prefix: str) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "tests.chaos.node_loss", redis_server.url, prefix],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    assert lines, p.stdout[-2000:] + p.stderr[-3000:]
    out = json.loads(lines[-1])
    print("\nnode loss:", out)
    assert p.returncode == 0, out
    assert out["succeeded"] == out["runs"] == 30
    assert out["runs_with_bad_events"] == 0
    assert out["running_when_node_removed"] > 0
    # The runs of the node that went away: some were running there, and every one of them was
    # taken over by a worker on a surviving node (a later attempt) and finished.
    assert out["running_on_the_lost_node"] > 0, out
    assert out["of_those_finished_by_a_surviving_node"] == out["running_on_the_lost_node"], out
    # One worker replica per node: the lost node's replica cannot be placed on the two left.
    assert out["workers_before"] == 3 and out["workers_after"] == 2, out
    assert out["replicas_after"].get("RUNNING") == 2, out
