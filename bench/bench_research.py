"""Research: the test-time-scaling curve — report quality against the context builder's compute.

``python -m bench research [--base URL] [--questions FILE] [--limit N] [--rounds 1,2,3,4]
[--budgets 8,16,32] [--parallel 2]``

FS-Researcher's finding is that report quality rises with the compute given to the context
builder. This measures ours on a running service (start ``conclave up`` first; the default model
and options, only the knob under study changes):

* **rounds**: the same questions with ``rounds`` = 1, 2, 3, 4 and no budget;
* **budget**: the same questions with ``rounds`` = 4 and a ``model_calls`` budget of each size
  (the CPU model costs no USD, so model calls are the budget that binds).

Every report is scored like ``../shared/eval/score_research.py`` does: **coverage** is the share
of a question's key facts (regex groups) found in the report body, **cited** the share of facts
stated on a line whose citation points to an archived source that contains the fact. The figure
is the mean per point. It exits 1 when a scored run did not do the work it was given (it did not
succeed, ran fewer rounds than asked without a budget stop, or wrote no section), so a curve of
empty reports cannot pass for a flat one.

Prints JSON, writes ``bench/results/research.json`` and ``research.png``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench._common import emit, plot

HERE = Path(__file__).resolve().parent


def score(report: str, facts: list[list[str]], read: Any) -> dict[str, float]:
    """Coverage and cited share of one report (the definitions of score_research.py)."""
    body, _, refs_text = report.partition("\n## References")
    refs = {int(m.group(1)): m.group(2) for m in re.finditer(r"^\s*\[(\d+)\]\s*(\S+)", refs_text, re.MULTILINE)}
    lines = [ln.strip() for ln in body.splitlines() if ln.strip() and not ln.startswith("#")]
    found = cited = 0
    for group in facts:
        rx = re.compile("|".join(group), re.IGNORECASE)
        hits = [ln for ln in lines if rx.search(ln)]
        if not hits:
            continue
        found += 1
        cited += any(
            n in refs and rx.search(read(refs[n]) or "") for ln in hits for n in map(int, re.findall(r"\[(\d+)\]", ln))
        )
    return {"coverage": found / len(facts), "cited": cited / len(facts)}


def run_one(base: str, q: dict[str, Any], options: dict[str, Any], budget: dict[str, Any], timeout: float) -> dict:
    with httpx.Client(base_url=base, timeout=60) as c:
        t0 = time.time()
        r = c.post("/v1/runs", json={"kind": "research", "input": q["question"], "options": options, "budget": budget})
        r.raise_for_status()
        rid = r.json()["id"]
        while True:
            run = c.get(f"/v1/runs/{rid}").json()
            if run["status"] not in ("queued", "running") or time.time() - t0 > timeout:
                break
            time.sleep(2)
        seconds = time.time() - t0
        md = c.get(f"/v1/runs/{rid}/workspace/report.md")
        cache: dict[str, str] = {}

        def read(path: str) -> str:
            if path not in cache:
                resp = c.get(f"/v1/runs/{rid}/workspace/{path}")
                cache[path] = resp.text if resp.status_code == 200 else ""
            return cache[path]

        s = score(md.text, q["facts"], read) if md.status_code == 200 else {"coverage": 0.0, "cited": 0.0}
    result = run.get("result") or {}
    usage = run.get("usage") or {}
    return {
        "id": q["id"],
        "run": rid,
        "status": run["status"],
        "seconds": round(seconds, 1),
        "rounds_done": result.get("rounds", 0),
        "sections": len(result.get("sections") or []),
        "budget_stops": result.get("exhausted") or [],
        "model_calls": usage.get("model_calls"),
        **s,
    }


def did_the_work(row: dict[str, Any], rounds: int) -> str | None:
    """Why a run does not count (None when it does)."""
    if row["status"] != "succeeded":
        return f"{row['id']} ({row['run']}) ended {row['status']}"
    if row["sections"] < 1:
        return f"{row['id']} ({row['run']}) wrote no section"
    if row["rounds_done"] < rounds and not any(str(e).startswith("build:") for e in row["budget_stops"]):
        return f"{row['id']} ({row['run']}) ran {row['rounds_done']} of {rounds} rounds without a budget stop"
    return None


def main() -> None:
    p = argparse.ArgumentParser(prog="bench research")
    p.add_argument("--base", default="http://127.0.0.1:8000", help="a running Conclave API")
    p.add_argument("--questions", default=str(HERE / "research-unseen.jsonl"))
    p.add_argument("--limit", type=int, default=2, help="questions used (the first N)")
    p.add_argument("--rounds", default="1,2,3,4")
    p.add_argument("--budgets", default="8,16,32", help="model_calls budgets (rounds = the largest of --rounds)")
    p.add_argument("--parallel", type=int, default=2, help="runs at once (the service's workers)")
    p.add_argument("--timeout", type=float, default=1800)
    a = p.parse_args()
    questions = [json.loads(ln) for ln in Path(a.questions).read_text().splitlines() if ln.strip()][: a.limit]
    rounds = [int(x) for x in a.rounds.split(",") if x]
    budgets = [int(x) for x in a.budgets.split(",") if x]
    jobs: list[tuple[str, int, dict[str, Any], dict[str, Any], dict[str, Any]]] = []
    for r in rounds:
        jobs += [("rounds", r, q, {"rounds": r}, {}) for q in questions]
    top = max(rounds) if rounds else 4
    for b in budgets:
        jobs += [("budget", b, q, {"rounds": top}, {"model_calls": b}) for q in questions]
    t0 = time.time()
    with ThreadPoolExecutor(max(1, a.parallel)) as pool:
        rows = list(pool.map(lambda j: (j[0], j[1], run_one(a.base, j[2], j[3], j[4], a.timeout)), jobs))
    problems = []
    points: dict[str, list[dict[str, Any]]] = {"rounds": [], "budget": []}
    for axis in ("rounds", "budget"):
        for x in rounds if axis == "rounds" else budgets:
            got = [row for ax, v, row in rows if ax == axis and v == x]
            for row in got:  # under a budget fewer rounds is the point; a report is still owed
                why = did_the_work(row, x if axis == "rounds" else 0)
                if why:
                    problems.append(why)
            points[axis].append(
                {
                    "x": x,
                    "coverage": round(statistics.mean(r["coverage"] for r in got), 3),
                    "cited": round(statistics.mean(r["cited"] for r in got), 3),
                    "seconds": round(statistics.mean(r["seconds"] for r in got), 1),
                    "model_calls": round(statistics.mean(r["model_calls"] or 0 for r in got), 1),
                    "runs": got,
                }
            )

    def draw(ax: Any) -> None:
        for axis, style in (("rounds", "-o"), ("budget", "--s")):
            pts = points[axis]
            if not pts:
                continue
            xs = list(range(1, len(pts) + 1))
            label = f"{'rounds' if axis == 'rounds' else 'model_calls'} {','.join(str(q['x']) for q in pts)}"
            ax.plot(xs, [q["coverage"] for q in pts], style, label=f"coverage vs {label}")
            ax.plot(xs, [q["cited"] for q in pts], style, alpha=0.5, label=f"cited vs {label}")
        ax.set_xlabel("compute step: the n-th value of --rounds (no budget) or of --budgets (rounds = max)")
        ax.set_ylabel("share of key facts")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"research quality vs context-builder compute ({len(questions)} questions)")
        ax.legend(fontsize=7)

    png = plot("research", draw)
    emit(
        "research",
        {
            "questions": [q["id"] for q in questions],
            "rounds": points["rounds"],
            "budget": points["budget"],
            "wall_s": round(time.time() - t0, 1),
            "png": str(png),
            "problems": problems,
        },
    )
    if problems:
        sys.stderr.write("runs that did not do the work:\n" + "\n".join(f"  {x}" for x in problems) + "\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
