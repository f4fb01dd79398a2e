"""A worker process freezes what startup made out of the collector's view and raises its thresholds
(in a child process: the test process keeps its own collector)."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import gc, json
from conclave.core.gc_tuning import THRESHOLDS, tune_for_service
before = gc.get_freeze_count()
tune_for_service()
frozen = gc.get_freeze_count()
tune_for_service()
print(json.dumps({"before": before, "frozen": frozen, "again": gc.get_freeze_count(),
                  "thresholds": gc.get_threshold(), "want": THRESHOLDS}))
"""


def test_tuning_freezes_startup_objects_once_and_raises_the_thresholds() -> None:
    out = json.loads(subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout)
    assert out["before"] == 0 and out["frozen"] > 1_000, "startup's objects were not frozen"
    assert out["again"] == out["frozen"], "a second call froze again"
    assert out["thresholds"] == list(out["want"]) and out["want"][0] > 700


WORKER_PROBE = """
import gc, json, sys
import conclave.controller.worker as w

class Probe:  # stands in for the event loop's runner: what the collector looks like when the loop starts
    def __init__(self, **kw):
        print(json.dumps({"thresholds": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
        sys.exit(0)

w.asyncio.Runner = Probe
w.main(["--redis-url", "redis://127.0.0.1:9/0", "--name", "probe"])
"""


def test_the_standalone_worker_tunes_its_collector_before_its_loop_starts() -> None:
    from conclave.core.gc_tuning import THRESHOLDS

    run = subprocess.run([sys.executable, "-c", WORKER_PROBE], capture_output=True, text=True, check=True, timeout=120)
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["thresholds"] == list(THRESHOLDS) and out["frozen"] > 1_000


def test_a_serve_worker_replica_tunes_its_collector() -> None:
    import inspect

    from conclave.controller import serve_worker

    src = inspect.getsource(serve_worker.WorkerDeployment.func_or_class.__init__)
    assert any(line.strip().startswith("tune_for_service()") for line in src.splitlines())
