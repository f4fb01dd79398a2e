"""Shared bits of the benchmarks: a throwaway Valkey, checks that fail loudly, JSON output, PNG plots.

A benchmark's figure is only worth something if the work it timed happened. Every benchmark calls
``check`` on what it measured (steps per run, calls, tokens, statuses); a failed check raises
``BenchCheckFailed``, which ``python -m bench`` turns into a message on stderr and exit status 1,
so no JSON with a figure is written for work that did not run.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
#: The shared anchors (``../shared`` next to the checkout).
ANCHORS = ROOT.parent / "shared" / "anchors"


class BenchCheckFailed(AssertionError):
    """What a benchmark timed did not happen as it should have; its figures must not be used."""


def check(ok: bool, what: str) -> None:
    """Fail the benchmark with ``what`` (say what was expected and what was seen) unless ``ok``."""
    if not ok:
        raise BenchCheckFailed(what)


def machine() -> dict[str, Any]:
    """Where and when a figure was measured (the load average says how shared the machine was)."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_average_at_end": [round(x, 2) for x in load],
        "argv": sys.argv,
    }


def emit(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "machine": machine(), **data}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    return path


def plot(name: str, draw: Callable[[Any], Any], *, size: tuple[float, float] = (7, 4)) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    draw(ax)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@contextlib.contextmanager
def temp_valkey(fsync: str = "always") -> Iterator[Any]:
    """A throwaway Valkey with the append-only file on; ``always`` (the default, what the chaos
    tests run) puts every write on disk before it is acknowledged. Its data directory is removed
    when it stops (a 1,000-run load leaves tens of MB of append-only file)."""
    from conclave.controller.redis_server import EmbeddedRedis

    data = Path(tempfile.mkdtemp(prefix="bench-valkey-"))
    try:
        with EmbeddedRedis(data, fsync=fsync) as srv:
            yield srv
    finally:
        shutil.rmtree(data, ignore_errors=True)


def log(msg: str) -> None:
    """Progress on stderr (stdout carries the JSON)."""
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()
