"""Research: replay stage 2's evidence selection on finished runs, with the code checked out here.

``python -m bench replay RESULTS.json [RESULTS.json …] [--base URL] [--questions FILE …]``

Stage 2 of a research run (which sentences of the archived sources become a section's evidence,
and the report assembled from them) is deterministic given the run's sources and key questions.
So a change to the selection can be judged on runs that already finished, without running the
model again: this reads each run's ``logs/research_state.json`` and archived sources through the
API of the service that ran it, reruns stage 2's own selection (``conclave.agents.research.write``:
``evidence_pool`` → ``select_evidence``) and ``assemble_report`` with the code checked out here (the report is the evidence lines only: the model's grounded prose
is left out), and scores the result the way ``../shared/eval/score_research.py`` does.

``RESULTS.json`` is what ``score_research.py --out`` writes (each row names a question ``id`` and
its ``run``); the questions' facts come from ``--questions`` (default: the dev set and the held-out
sets in ``bench/``). Per run it reports the replayed coverage, cited share and on_topic share, the
real report's coverage (from its own ``report.md``), the share of facts in the run's sources at
all, and the evidence lines chosen. With the code that ran the runs, the replayed coverage is the
runs' own wherever their sections are the evidence (as with the CPU model), which is how to check
the replay before trusting a comparison. It exits 1 when a run's state or sources cannot be read,
or when a replayed report has no evidence line.

Prints JSON and writes ``bench/results/replay.json`` and ``replay.png``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path
from typing import Any

import httpx

from bench._common import ROOT, check, emit, log, plot
from bench.bench_research import score

DEFAULT_QUESTIONS = [
    ROOT.parent / "shared" / "eval" / "research-dev.jsonl",
    *sorted((ROOT / "bench").glob("research-unseen*.jsonl")),
]


def fetch(client: httpx.Client, run: str) -> dict[str, str]:
    """The run's research state, report and every archived source it lists."""
    state = client.get(f"/v1/runs/{run}/workspace/logs/research_state.json")
    check(state.status_code == 200, f"run {run}: no research state ({state.status_code})")
    files = {"logs/research_state.json": state.text}
    for path in json.loads(state.text).get("sources", []):
        r = client.get(f"/v1/runs/{run}/workspace/{path}")
        check(r.status_code == 200, f"run {run}: source {path} cannot be read ({r.status_code})")
        files[path] = r.text
    report = client.get(f"/v1/runs/{run}/workspace/report.md")
    files["report.md"] = report.text if report.status_code == 200 else ""
    return files


def on_topic(report: str, topic: str | None) -> float | None:
    """Share of substantive lines (≥ 40 characters) that match the question's topic (score_research's definition)."""
    if not topic:
        return None
    body = report.partition("\n## References")[0]
    lines = [ln.strip() for ln in body.splitlines() if ln.strip() and not ln.startswith("#")]
    subst = [re.sub(r"\[\d+\]", "", ln).strip() for ln in lines if len(ln) >= 40]
    rx = re.compile(topic, re.IGNORECASE)
    return sum(1 for ln in subst if rx.search(ln)) / len(subst) if subst else 0.0


def replay(files: dict[str, str], question: dict[str, Any]) -> dict[str, Any]:
    """One run's stage-2 selection with the code checked out here, and its scores."""
    from conclave.agents.research.evidence import Meaning
    from conclave.agents.research.options import ResearchOptions
    from conclave.agents.research.state import ResearchState, assemble_report, read_source
    from conclave.agents.research.write import asked_questions, evidence_pool, select_evidence
    from conclave.core.workspace import Workspace

    ws = Workspace({path: text.encode() for path, text in files.items()})  # read as the writer reads it
    state = ResearchState.model_validate_json(files["logs/research_state.json"])
    queries = [kq.text for kq in asked_questions(state)]
    opts = ResearchOptions()  # the defaults: what runs scored without score_research.py --option used
    picked = select_evidence(queries, evidence_pool(ws, state.sources), Meaning(), opts, question["question"])
    sections = [
        (q, "\n".join(f"- {p.candidate.text} [{p.candidate.n}]" for p in sec))
        for q, sec in zip(queries, picked, strict=True)
        if sec
    ][: opts.max_sections]
    check(bool(sections), f"{question['id']}: the replayed report has no evidence line")
    titles = {p: read_source(ws, p)[0] for p in state.sources if ws.exists(p)}
    report = assemble_report(question["question"], sections, state.sources, titles)
    sources = "\n".join(files[p] for p in state.sources if p in files)

    def read(path: str) -> str:
        return files.get(path, "")

    replayed = score(report, question["facts"], read)
    return {
        "id": question["id"],
        "coverage": replayed["coverage"],
        "cited": replayed["cited"],
        "on_topic": on_topic(report, question.get("topic")),
        "real_coverage": score(files["report.md"], question["facts"], read)["coverage"],
        "facts_in_sources": sum(bool(re.search("|".join(g), sources, re.IGNORECASE)) for g in question["facts"])
        / len(question["facts"]),
        "evidence_lines": sum(len(sec) for sec in picked),
        "sources": len(state.sources),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("results", nargs="+", type=Path, help="score_research.py --out files")
    p.add_argument("--base", default="http://127.0.0.1:8000", help="the service that ran the runs")
    p.add_argument("--questions", action="append", type=Path, help="question sets (JSON lines with id and facts)")
    a = p.parse_args()
    questions: dict[str, dict[str, Any]] = {}
    for path in a.questions or DEFAULT_QUESTIONS:
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    q = json.loads(line)
                    questions[q["id"]] = q
    rows: list[dict[str, Any]] = []
    with httpx.Client(base_url=a.base, timeout=60) as client:
        for path in a.results:
            for row in json.loads(path.read_text())["rows"]:
                check(row["id"] in questions, f"{path}: question {row['id']} is in no --questions file")
                log(f"replaying {row['id']} ({row['run']})")
                rows.append({"run": row["run"], **replay(fetch(client, row["run"]), questions[row["id"]])})
    check(bool(rows), "no run to replay")
    mean = {
        k: round(statistics.mean(r[k] for r in rows), 3)
        for k in ("coverage", "cited", "on_topic", "real_coverage", "facts_in_sources", "evidence_lines")
        if all(r[k] is not None for r in rows)
    }

    def draw(ax: Any) -> None:
        xs = range(len(rows))
        ax.bar([x - 0.2 for x in xs], [r["real_coverage"] for r in rows], 0.4, label="the run's report")
        ax.bar([x + 0.2 for x in xs], [r["coverage"] for r in rows], 0.4, label="replayed selection")
        ax.set_xticks(list(xs), [r["id"] for r in rows], rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("coverage of key facts")
        ax.set_title("Stage 2 replayed on finished runs")
        ax.legend(fontsize=8)

    emit("replay", {"base": a.base, "rows": rows, "mean": mean, "plot": str(plot("replay", draw, size=(9, 4)))})
