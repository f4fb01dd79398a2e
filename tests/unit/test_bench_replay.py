"""The research replay benchmark reruns stage 2's selection on a finished run's files: it picks
the evidence the current code would pick, scores it like score_research.py, and refuses a replay
that produced no evidence."""

from __future__ import annotations

import pytest

from bench._common import BenchCheckFailed
from bench.bench_replay import replay
from conclave.agents.research.state import KeyQuestion, ResearchState
from conclave.tools.search import embedder

pytestmark = pytest.mark.skipif(embedder() is None, reason="the cpu extra (embedding model) is not installed")

QUESTION = {
    "id": "t-zipfile",
    "question": "How do you read and write ZIP archives with Python's zipfile module?",
    "facts": [["namelist"], ["extractall"], ["coral"]],
    "topic": "zip|archive",
}


def _files(*bodies: str, report: str = "") -> dict[str, str]:
    paths = [f"knowledge_base/sources/s{n}.md" for n in range(1, len(bodies) + 1)]
    state = ResearchState(
        question=QUESTION["question"],
        key_questions=[KeyQuestion(id=1, text=QUESTION["question"], sources=paths, note="knowledge_base/q1.md")],
        sources=paths,
    )
    files = {
        p: f"# zipfile.ZipFile (class in module zipfile)\nsource: corpus/{p}\n\n{b}\n"
        for p, b in zip(paths, bodies, strict=True)
    }
    return {**files, "logs/research_state.json": state.model_dump_json(), "report.md": report}


def test_a_replay_scores_the_evidence_the_current_code_picks_and_the_facts_the_sources_hold() -> None:
    files = _files(
        "zipfile.ZipFile.namelist(self) Return a list of file names in the archive.",
        "zipfile.ZipFile.extractall(self, path=None) Extract all members from the archive to the directory.",
    )
    row = replay(files, QUESTION)
    assert row["evidence_lines"] == 2
    assert row["coverage"] == pytest.approx(2 / 3)  # coral is in no source
    assert row["cited"] == pytest.approx(2 / 3)  # each line cites the source it came from
    assert row["facts_in_sources"] == pytest.approx(2 / 3)
    assert row["real_coverage"] == 0.0  # the run's own report.md is empty here
    assert row["on_topic"] == 1.0


def test_a_replay_that_picks_no_evidence_fails_its_check() -> None:
    files = _files("Coral reefs grow in warm shallow seas where sunlight reaches the polyps.")
    with pytest.raises(BenchCheckFailed, match="no evidence line"):
        replay(files, QUESTION)
