"""What the reader of a research report sees, decided by meaning: distinct key questions, evidence
allocated to the section it belongs to (never to two), drafted sentences kept only with the citation
of a source that contains what they say, and a report without repeated lines."""

from __future__ import annotations

import pytest

from conclave.agents.research.evidence import (
    Candidate,
    Meaning,
    Picked,
    allocate_evidence,
    candidates,
    distinct_questions,
    ground,
    near_copy,
)
from conclave.agents.research.state import assemble_report
from conclave.tools.search import embedder

pytestmark = pytest.mark.skipif(embedder() is None, reason="the cpu extra (embedding model) is not installed")

QUESTION = "How do Python's asyncio tasks differ from threads?"


@pytest.fixture(scope="module")
def meaning() -> Meaning:
    return Meaning()


def test_a_rephrasing_of_the_question_is_not_a_second_key_question(meaning: Meaning) -> None:
    proposed = [
        "What is the difference between asyncio tasks and threads in Python?",  # the question again
        "How does the event loop schedule tasks?",
        "How is the event loop scheduling tasks?",  # a rephrasing of the one before
        "How do threads share data safely?",
    ]
    kept = distinct_questions(QUESTION, [QUESTION], proposed, meaning)
    assert kept == ["How does the event loop schedule tasks?", "How do threads share data safely?"]


def test_no_evidence_line_appears_in_two_sections_and_each_goes_where_it_belongs(meaning: Meaning) -> None:
    loop = "The event loop runs one callback at a time and schedules tasks when their awaited I/O is ready."
    lock = "A lock lets one thread at a time enter a critical section, so threads can share data safely."
    pool = [
        Candidate(1, "a.md", loop),
        Candidate(2, "b.md", lock),
        Candidate(3, "c.md", loop),  # the same sentence archived twice
        Candidate(4, "d.md", lock.replace("A lock lets", "A lock lets just")),  # a near-copy
        Candidate(5, "e.md", "The pickle module turns Python objects into a stream of bytes."),  # off topic
    ]
    queries = ["How does the event loop schedule tasks?", "How do threads share data safely?"]
    sections = allocate_evidence(queries, pool, meaning, per_section=5)
    texts = [[p.candidate.text for p in sec] for sec in sections]
    assert texts[0] == [loop] and texts[1] == [lock]
    lines = [t for sec in texts for t in sec]
    assert len(lines) == len(set(lines))
    assert all(not near_copy(a, b) for i, a in enumerate(lines) for b in lines[i + 1 :])


def test_evidence_for_a_question_is_relevant_not_just_sharing_a_word(meaning: Meaning) -> None:
    pool = [
        *candidates(1, "make.md", "The task module of the build system lists tasks in a file.", "build tasks"),
        *candidates(
            2,
            "asyncio.md",
            "A Task wraps a coroutine and runs it on the event loop, switching only at await points.",
            "asyncio tasks",
        ),
        *candidates(3, "sewing.md", "Threads in a sewing machine are wound on a bobbin.", "sewing"),
    ]
    picked = allocate_evidence([QUESTION], pool, meaning, per_section=5)[0]
    assert [p.candidate.text for p in picked] == [
        "A Task wraps a coroutine and runs it on the event loop, switching only at await points."
    ]


def test_a_sentence_that_leans_on_the_one_before_keeps_it() -> None:
    got = candidates(
        1, "j.md", "If ensure_ascii is false, non-ASCII characters are output as is. Otherwise, they are escaped."
    )
    assert [c.text for c in got] == [
        "If ensure_ascii is false, non-ASCII characters are output as is. Otherwise, they are escaped."
    ]


def test_a_drafted_fact_carries_the_citation_of_the_source_that_contains_it(meaning: Meaning) -> None:
    evidence = [
        Picked(Candidate(3, "tasks.md", "Tasks switch only at await points, so one thread runs many tasks."), 0.7),
        Picked(Candidate(7, "threads.md", "The operating system preempts threads at any time."), 0.6),
    ]
    draft = (
        "Because tasks give up control only where they await, one thread can run many of them [7]. "
        "Threads, in contrast, can be preempted by the operating system whenever it likes. "
        "Tasks were invented in 1972 by a committee in Geneva [3]."
    )
    text, cited, dropped = ground(draft, evidence, meaning)
    assert "one thread can run many of them [3]." in text  # the wrong [7] is corrected
    assert "whenever it likes [7]." in text  # an uncited fact gets its source
    assert "Geneva" not in text and dropped == 1  # nothing supports it: dropped
    assert cited == [3, 7]


def test_the_report_does_not_repeat_a_line() -> None:
    line = "A Task wraps a coroutine and runs it on the event loop, switching only at await points."
    report = assemble_report(
        "Q?",
        [
            ("One", f"- {line} [1]\n- Threads are preempted by the operating system at any time. [2]"),
            ("Two", f"- {line} [1]\n- Another line that is long enough to count here. [2]"),
        ],
        ["knowledge_base/sources/a.md", "knowledge_base/sources/b.md"],
        {},
    )
    assert report.count(line) == 1
    assert "## Two" in report and "Another line that is long enough" in report
