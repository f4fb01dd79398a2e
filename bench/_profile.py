"""A py-spy profile (raw collapsed stacks: ``frame;frame;... count`` per line) summarised: the
frames with the most self time, and Conclave's own functions by inclusive time."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _name(frame: str, *, with_line: bool) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    where = m.group("file")
    for marker in ("site-packages/", "lib/python3", "conclave/", "bench/"):
        i = where.find(marker)
        if i >= 0:
            where = where[i + len(marker) :] if marker.startswith(("site", "lib")) else where[i:]
            break
    line = f":{m.group('line')}" if with_line and m.group("line") else ""
    return f"{m.group('fn')} ({where}{line})"


def summarise(path: Path, top: int = 25) -> dict[str, Any]:
    """Top frames by self time (the frame on top of the stack when sampled) and, for frames in
    ``conclave/``, by inclusive time (anywhere on the stack), as percentages of all samples."""
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for raw in path.read_text(errors="replace").splitlines():
        stack, _, count = raw.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        self_t[_name(frames[-1], with_line=False)] += n
        for f in {_name(f, with_line=False) for f in frames if "conclave/" in f}:
            incl[f] += n

    def pct(c: Counter[str]) -> list[dict[str, Any]]:
        return [{"frame": k, "percent": round(100 * v / total, 1)} for k, v in c.most_common(top)]

    return {"samples": total, "top_self": pct(self_t), "conclave_inclusive": pct(incl)}
