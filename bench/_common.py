"""Shared bits of the benchmarks: a throwaway Valkey, JSON output, PNG plots."""

from __future__ import annotations

import json
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    import os

    return {"python": sys.version.split()[0], "cpus": os.cpu_count(), "platform": platform.platform()}


def emit(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "machine": machine(), **data}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    return path


def plot(name: str, draw: Any) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    draw(ax)
    fig.tight_layout()
    path = RESULTS / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def temp_valkey() -> Any:
    from conclave.controller.redis_server import EmbeddedRedis

    return EmbeddedRedis(Path(tempfile.mkdtemp(prefix="bench-valkey-")))
