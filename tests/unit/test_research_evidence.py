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
    novel,
    rerank,
    spread,
)
from conclave.agents.research.state import assemble_report
from conclave.tools.search import embedder
from conclave.tools.search.text import Hit

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


def test_an_api_entrys_signature_and_summary_sentence_is_evidence() -> None:
    """The first sentence of a docstring entry follows its signature; the parameter list makes it
    look like code, but it is the entry's summary and names the parameters."""
    body = (
        "shutil.rmtree(path, ignore_errors=False, onerror=None, *, dir_fd=None)\n"
        "Recursively delete a directory tree.\n\n"
        "callable(src, names) -> ignored_names\n\n"
        "If ignore_errors is set, errors are ignored and the tree is removed as far as it can be."
    )
    got = [c.text for c in candidates(1, "rmtree.md", body, "shutil.rmtree")]
    assert got[0].startswith("shutil.rmtree(path, ignore_errors=False") and got[0].endswith("directory tree.")
    assert not any(t.startswith("callable(") for t in got), "a bare signature says nothing"
    assert len(got) == 2


def test_a_long_first_source_does_not_crowd_out_the_next_sources_facts() -> None:
    """A section quotes its best source first and each source in reading order, but one source
    gives at most half the lines while another still has lines to give."""
    pool = [Candidate(1, "long.md", f"The first source says fact {i} in its own sentence.") for i in range(6)]
    pool += [Candidate(2, "next.md", f"The second source says other fact {i} in a sentence.") for i in range(2)]
    rows = [(i, 0.9 - 0.01 * i) for i in range(6)] + [(6, 0.6), (7, 0.55)]
    chosen = spread(rows, pool, 4)
    assert [pool[i].n for i, _ in chosen] == [1, 1, 2, 2]
    assert [i for i, _ in chosen] == [0, 1, 6, 7], "reading order within a source"
    # with no other source left to give lines, the first source fills the section
    assert [i for i, _ in spread(rows[:6], pool, 4)] == [0, 1, 2, 3]


def test_re_ranking_puts_the_passage_about_the_question_before_one_that_shares_its_words(meaning: Meaning) -> None:
    hits = [
        Hit("build tasks", "make/tasks", "Tasks of the build system are listed in a task file; threads of work.", 2.0),
        Hit("sewing", "sewing/threads", "Threads in a sewing machine are wound on a bobbin.", 1.5),
        Hit(
            "asyncio tasks",
            "asyncio/tasks",
            "An asyncio task runs a coroutine on the event loop and switches only at await points, "
            "unlike a thread, which the operating system preempts.",
            1.0,
        ),
    ]
    got = rerank(hits, "How do asyncio tasks differ from threads?", QUESTION, meaning, 2)
    assert [h.source for h in got][0] == "asyncio/tasks" and len(got) == 2


LRU_CACHE = (
    "functools.lru_cache(maxsize=128, typed=False)\nLeast-recently-used cache decorator.\n\n"
    "If *maxsize* is set to None, the LRU features are disabled and the cache\ncan grow without bound.\n\n"
    "If *typed* is True, arguments of different types will be cached separately.\n"
    "For example, f(3.0) and f(3) will be treated as distinct calls with\ndistinct results.\n\n"
    "Arguments to the cached function must be hashable.\n\n"
    "View the cache statistics named tuple (hits, misses, maxsize, currsize)\n"
    "with f.cache_info().  Clear the cache and statistics with f.cache_clear().\n"
    "Access the underlying function with f.__wrapped__.\n"
)
LRU_QUESTION = "What does functools.lru_cache do, and what do its parameters control?"


def test_a_plain_sentence_stating_a_fact_comes_back_although_the_relevance_bar_cut_it(meaning: Meaning) -> None:
    """A docstring's plain sentences ("Clear the cache and statistics with f.cache_clear().") score
    far below its summary line, so the on-subject bar cuts them; a section takes such a line back
    when it sits next to a line the section quotes and says something the section does not."""
    pool = candidates(1, "lru.md", LRU_CACHE, "functools.lru_cache (function in module functools)")
    pool += candidates(2, "cache.md", "functools.cache(user_function, /)\nSimple lightweight unbounded cache.")
    clear = "Clear the cache and statistics with f.cache_clear()."
    picked = allocate_evidence([LRU_QUESTION], pool, meaning, 8, anchor=LRU_QUESTION)[0]
    texts = [p.candidate.text for p in picked]
    assert clear in texts
    assert len(texts) == len(set(texts))
    # it is not a core line: without the lines a section may take back, the bar cuts it
    core = allocate_evidence([LRU_QUESTION], pool, meaning, 8, anchor=LRU_QUESTION, novel_lines=0)[0]
    assert clear not in [p.candidate.text for p in core]
    assert len(texts) <= len(core) + 2, "at most NOVEL_LINES of the limit come back"
    # and lines come back in reading order with their source's, not tacked on at the end
    order = [pool.index(p.candidate) for p in picked if p.candidate.n == 1]
    assert order == sorted(order)


def test_a_cut_line_comes_back_only_beside_a_quoted_line_and_with_words_the_section_lacks() -> None:
    pool = [
        Candidate(1, "a.md", "The queue holds items for worker threads in their order."),  # 0 nothing new
        Candidate(1, "a.md", "The queue holds items for worker threads in arrival order."),  # 1 quoted
        Candidate(1, "a.md", "Call task_done after processing each fetched item to signal completion."),  # 2 new
        Candidate(1, "a.md", "Bounded queues block producers when maxsize items are waiting already."),  # 3 beside 2
        Candidate(1, "a.md", "Unrelated configuration of logging handlers and formatter objects."),  # 4 far away
    ]
    chosen = [(1, 0.8)]
    spare = [(0, 0.7), (2, 0.5), (3, 0.45), (4, 0.65)]
    assert novel(chosen, spare, pool, 5) == [(2, 0.5), (3, 0.45)], "each beside a quoted line, each saying more"
    assert novel(chosen, spare, pool, 1) == [(2, 0.5)], "at most the limit"
    assert novel(chosen, spare, pool, 0) == []


def test_a_key_question_the_sources_do_not_answer_takes_no_lines_from_the_section_that_is_written(
    meaning: Meaning,
) -> None:
    """A report's lines are shared among the sections that get evidence: a stray key question (here
    one about coral reefs, for a question about ZIP archives) gets no section, so the one that is
    written has the report's lines, not half of them."""
    facts = [
        "zipfile.ZipFile.namelist(self) Return a list of file names in the archive.",
        "zipfile.ZipFile.extractall(self, path=None) Extract all members from the archive to the directory.",
        "zipfile.ZipFile.writestr(self, zinfo_or_arcname, data) Write a file into the archive from a string.",
        "zipfile.ZipFile.open(self, name, mode='r') Return a file-like object for a member of the archive.",
        "zipfile.ZipFile.read(self, name, pwd=None) Return the bytes of a member of the ZIP archive.",
        "zipfile.ZipFile.write(self, filename, arcname=None) Put a file into the ZIP archive under arcname.",
    ]
    pool = [Candidate(n, f"s{n}.md", text) for n, text in enumerate(facts, 1)]
    question = "How do you read and write ZIP archives with Python's zipfile module?"
    queries = [question, "How do coral reefs form in tropical oceans?"]
    sections = allocate_evidence(queries, pool, meaning, 3, anchor=question, report_lines=6, novel_lines=0)
    assert sections[1] == []
    assert len(sections[0]) == 6
    # the same key questions, lines counted per key question asked: the section gets half
    halved = allocate_evidence(queries, pool, meaning, 3, anchor=question, novel_lines=0)
    assert len(halved[0]) == 3
