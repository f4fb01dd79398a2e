"""What the reader sees: distinct key questions, evidence that belongs, facts with their citations.

A small model cannot be trusted to decide any of this, and a large one should not have to, so the
workflow decides it by meaning, the same way for every question:

- **Key questions** proposed by the planner are kept only if they are not a rephrasing of the
  question or of one already kept (similarity at or above ``SAME_QUESTION``).
- **Evidence** is sentences copied from archived sources. Each candidate sentence is scored
  against every section's key question; it goes to the section it is most relevant to, only if it
  is relevant enough (``RELEVANT``), and never to two sections; within a section sentences are
  ranked by relevance and near-copies are dropped, so the writer reads the best evidence first.
- **Model prose** is kept sentence by sentence only where an evidence sentence supports it
  (``SUPPORTED``); the sentence then cites that evidence's source, so a stated fact points to a
  source that contains it. Unsupported sentences are dropped.

Similarity is the cosine of sentence embeddings (``conclave.tools.search.embed``) where the ``cpu``
extra is installed, else the cosine of word sets: the thresholds differ, the logic does not.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from conclave.tools.search.embed import Embedder, Vectors, embedder
from conclave.tools.search.text import Hit, is_prose, sentences, terms

__all__ = [
    "RERANK_POOL",
    "Candidate",
    "Meaning",
    "Thresholds",
    "allocate_evidence",
    "distinct_questions",
    "ground",
    "near_copy",
    "rerank",
    "spread",
]

_MAX_SENTENCE = 420


@dataclass(frozen=True)
class Thresholds:
    """Similarity cut-offs; the lexical ones apply when no embedding model is installed."""

    same_question: float  #: a proposed key question this close to another is a rephrasing of it
    relevant: float  #: a sentence this close to a key question is evidence for it
    supported: float  #: a model sentence this close to an evidence sentence is supported by it
    duplicate: float  #: two evidence sentences this close say the same thing
    heading: float  #: a section heading this close to its key question names it


DENSE = Thresholds(same_question=0.75, relevant=0.30, supported=0.62, duplicate=0.90, heading=0.45)
LEXICAL = Thresholds(same_question=0.75, relevant=0.18, supported=0.50, duplicate=0.80, heading=0.30)


class Meaning:
    """Similarity of texts by meaning, with the vectors of texts seen before kept."""

    def __init__(self, model: Embedder | None = None, *, use_model: bool = True) -> None:
        self.model = model if model is not None else (embedder() if use_model else None)
        self.t = DENSE if self.model is not None else LEXICAL
        self._vectors: dict[str, Vectors] = {}

    @property
    def dense(self) -> bool:
        return self.model is not None

    def _embed(self, texts: Sequence[str]) -> None:
        assert self.model is not None
        todo = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if todo:
            for text, vec in zip(todo, self.model.embed(todo), strict=True):
                self._vectors[text] = vec

    def matrix(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """Similarities, ``len(a)`` × ``len(b)``."""
        if not a or not b:
            return np.zeros((len(a), len(b)), dtype=np.float32)
        if self.model is not None:
            self._embed([*a, *b])
            va = np.stack([self._vectors[t] for t in a])
            vb = np.stack([self._vectors[t] for t in b])
            return np.asarray(va @ vb.T, dtype=np.float32)
        sa, sb = [terms(t) for t in a], [terms(t) for t in b]
        out = np.zeros((len(a), len(b)), dtype=np.float32)
        for i, x in enumerate(sa):
            for j, y in enumerate(sb):
                out[i, j] = len(x & y) / math.sqrt(len(x) * len(y)) if x and y else 0.0
        return out

    def similarity(self, a: str, b: str) -> float:
        return float(self.matrix([a], [b])[0, 0])


def near_copy(a: str, b: str) -> bool:
    """Whether two lines say the same thing in nearly the same words (citations and case aside)."""
    x = re.sub(r"\[\d+(?:,\s*\d+)*\]", "", a).strip().lower()
    y = re.sub(r"\[\d+(?:,\s*\d+)*\]", "", b).strip().lower()
    if not x or not y:
        return False
    if x in y or y in x:
        return min(len(x), len(y)) >= 0.6 * max(len(x), len(y)) or min(len(x), len(y)) >= 80
    return difflib.SequenceMatcher(None, x, y, autojunk=False).ratio() >= 0.75


def distinct_questions(question: str, known: Sequence[str], proposed: Sequence[str], meaning: Meaning) -> list[str]:
    """The proposed key questions that are neither a rephrasing of ``question`` or of one in
    ``known``, nor of each other (the first of a group of rephrasings is kept)."""
    kept: list[str] = []
    anchors = [question, *known]
    for text in proposed:
        others = anchors + kept
        sims = meaning.matrix([text], others)[0]
        if float(sims.max(initial=0.0)) >= meaning.t.same_question or any(near_copy(text, o) for o in others):
            continue
        kept.append(text)
    return kept


@dataclass(frozen=True)
class Candidate:
    """One sentence of an archived source: ``n`` is the source's citation number, ``context`` the
    source's title and opening (what the sentence is about when it does not say so itself)."""

    n: int
    path: str
    text: str
    context: str = ""


#: A sentence that starts like this leans on the one before it ("Otherwise, …", "This means …").
_LEANS = re.compile(
    r"^(Otherwise|This|These|That|Those|It|Its|They|Their|Such|However|Also|Then|If so|In (this|that|which) case)\b"
)


_API_NAME = re.compile(r"[A-Za-z_][\w.]*\(")


def _signed_prose(unit: str) -> bool:
    """Whether ``unit`` is an API entry's signature followed by prose ("shutil.rmtree(path,
    ignore_errors=False, …) Recursively delete a directory tree."): the signature makes it read as
    code, but it is the entry's summary, and names the parameters the rest of the entry explains."""
    m = _API_NAME.match(unit)
    if m is None:
        return False
    depth = 0
    for k in range(m.end() - 1, len(unit)):
        depth += {"(": 1, ")": -1}.get(unit[k], 0)
        if depth == 0:
            rest = unit[k + 1 :].strip()
            rest = re.sub(r"^->\s*\S+\s*", "", rest)
            return is_prose(rest, min_words=3)
    return False


def candidates(n: int, path: str, body: str, title: str = "") -> list[Candidate]:
    """The prose sentences of a source, each one evidence candidate; a sentence that leans on the
    one before it is kept with it, so an extract does not lose what "this" or "otherwise" means."""
    units: list[str] = []
    for s in sentences(body):
        s = s.replace("[", "(").replace("]", ")")  # a bracket in a quote would read as a citation
        if units and _LEANS.match(s) and len(units[-1]) + len(s) < _MAX_SENTENCE:
            units[-1] = f"{units[-1]} {s}"
        else:
            units.append(s)
    units = [u for u in units if len(u) >= 25 and (is_prose(u) or _signed_prose(u))]
    context = f"{title}\n{body[:1200]}".strip()
    out = []
    for s in units:
        if len(s) > _MAX_SENTENCE:
            s = s[: _MAX_SENTENCE - 1].rsplit(" ", 1)[0] + "…"
        out.append(Candidate(n, path, s, context))
    return out


#: Evidence for a question scores at least this share of the best candidate's score for it.
RELATIVE = 0.55
#: A section quotes only sources whose best sentence scores at least this share of its best source's.
SOURCE_SHARE = 0.65
#: ... and at least this share of the best candidate's relevance to the report's own question.
ON_SUBJECT = 0.65
#: A sentence's relevance: its own similarity to the question, and some of its source's.
_OWN = 0.6


def relevance(pool: Sequence[Candidate], queries: Sequence[str], meaning: Meaning) -> np.ndarray:
    """``len(pool)`` × ``len(queries)`` relevance: a blend of each sentence's similarity to the
    query and its source's (a sentence in the passage about the question outranks a like-worded
    one elsewhere)."""
    own = meaning.matrix([c.text for c in pool], list(queries))
    contexts = list(dict.fromkeys(c.context for c in pool if c.context))
    if not contexts:
        return own
    ctx = meaning.matrix(contexts, list(queries))
    row = {c: i for i, c in enumerate(contexts)}
    blended = own.copy()
    for i, c in enumerate(pool):
        if c.context:
            blended[i] = _OWN * own[i] + (1 - _OWN) * ctx[row[c.context]]
    return blended


@dataclass(frozen=True)
class Picked:
    candidate: Candidate
    score: float


def allocate_evidence(
    queries: Sequence[str],
    pool: Sequence[Candidate],
    meaning: Meaning,
    per_section: int,
    *,
    anchor: str | None = None,
    taken: Sequence[str] = (),
    novel_lines: int | None = None,
    report_lines: int = 0,
) -> list[list[Picked]]:
    """Evidence for each query (a section's key question), most relevant source first.

    Every candidate goes to the query it is most relevant to, if it is relevant enough (``relevant``,
    and within ``RELATIVE`` of the best candidate for that query) and, when ``anchor`` (the report's
    question) is given, relevant to it too, so a stray key question does not bring stray evidence. A
    candidate that near-copies one already chosen anywhere (or one in ``taken``) is dropped, so no line
    appears in two sections. A section's lines are grouped by source, the most relevant source first
    and each source's sentences in reading order (a passage that answers the question is quoted, not
    cherry-picked), at most ``per_section`` per query, or ``report_lines`` shared among the sections
    that have evidence when that is more: a key question the sources do not answer gets no section,
    so it must not take lines from the ones that are written.

    Then a section may take up to ``novel_lines`` more (default: ``NOVEL_LINES`` of ``per_section``):
    sentences that a bar or the line limit cut although they are relevant to its question and to the
    report's (``NOVEL_SHARE`` of the best), sit next to a line it quotes, and bring content words it
    lacks (``novel``). The bars keep a section on its subject, but they also cut the plain sentences
    that state a fact ("Clear the cache with f.cache_clear()" scores low beside the entry's
    summary); this lets those back in without letting in lines that only say the same again."""
    if not queries:
        return []
    unique: list[Candidate] = []
    seen: set[str] = set()
    for c in pool:
        key = c.text.lower()
        if key not in seen:
            seen.add(key)
            unique.append(c)
    if not unique:
        return [[] for _ in queries]
    sims = relevance(unique, queries, meaning)
    on_subject = relevance(unique, [anchor], meaning)[:, 0] if anchor else None
    # relevant enough in absolute terms, and close to the best the sources have for that question:
    # a question the sources barely answer gets few lines, not the leftovers of the others
    floor = np.maximum(meaning.t.relevant, RELATIVE * sims.max(axis=0))
    subject_floor = max(meaning.t.relevant, ON_SUBJECT * float(on_subject.max())) if on_subject is not None else 0.0
    order = sorted(range(len(unique)), key=lambda i: (-float(sims[i].max(initial=0.0)), i))
    assigned: list[list[tuple[int, float]]] = [[] for _ in queries]
    # below a bar but relevant and about the subject: may still come in for a content word the section lacks
    reserve: list[list[tuple[int, float]]] = [[] for _ in queries]
    reserve_floor = max(meaning.t.relevant, NOVEL_SHARE * float(sims.max(initial=0.0)))
    novel_subject = max(meaning.t.relevant, NOVEL_SHARE * float(on_subject.max())) if on_subject is not None else 0.0
    kept_texts: list[str] = list(taken)
    kept_rows: list[int] = []
    for i in order:
        best = int(np.argmax(sims[i]))
        score = float(sims[i, best])
        if score < meaning.t.relevant:
            break  # ordered by best score: nothing after this is relevant either
        subject = float(on_subject[i]) if on_subject is not None else 1.0
        core = score >= floor[best] and subject >= subject_floor
        if not core and (score < reserve_floor or subject < novel_subject):
            continue
        text = unique[i].text
        if any(near_copy(text, k) for k in kept_texts):
            continue
        if kept_rows and meaning.dense:
            dup = meaning.matrix([text], [unique[j].text for j in kept_rows])[0]
            if float(dup.max()) >= meaning.t.duplicate:
                continue
        (assigned if core else reserve)[best].append((i, score))
        kept_texts.append(text)
        kept_rows.append(i)
    kept_of: list[tuple[list[tuple[int, float]], dict[int, float]]] = []
    for rows in assigned:
        best_of: dict[int, float] = {}
        for i, score in rows:
            best_of[unique[i].n] = max(best_of.get(unique[i].n, 0.0), score)
        # a source whose best sentence is far below the best source's is about something else
        top = max(best_of.values(), default=0.0)
        kept_of.append(([r for r in rows if best_of[unique[r[0]].n] >= SOURCE_SHARE * top], best_of))
    written = sum(1 for rows, _ in kept_of if rows)
    limit = max(per_section, report_lines // max(1, written))
    extra = math.ceil(NOVEL_LINES * limit) if novel_lines is None else novel_lines
    out: list[list[Picked]] = []
    for (rows, best_of), spare in zip(kept_of, reserve, strict=True):
        chosen = spread(rows, unique, limit)
        if rows and extra > 0:  # a section with evidence may take lines that say what it does not say yet
            left = [r for r in rows if r not in chosen] + [r for r in spare if unique[r[0]].n in best_of]
            chosen += novel(chosen, left, unique, extra)
        ranked = sorted(chosen, key=lambda r: (-best_of[unique[r[0]].n], unique[r[0]].n, r[0]))
        out.append([Picked(unique[i], round(score, 4)) for i, score in ranked])
    return out


#: A reserve line scores at least this share of the best candidate (for its question and for the report's).
NOVEL_SHARE = 0.5
#: A reserve line must bring at least this many content words the section's lines do not have.
NOVEL_WORDS = 2
#: A reserve line is at most this many sentences from a line the section quotes, in the same source.
NOVEL_NEAR = 1
#: Reserve lines a section may add, as a share of its line limit.
NOVEL_LINES = 0.2


def novel(
    chosen: Sequence[tuple[int, float]], spare: Sequence[tuple[int, float]], pool: Sequence[Candidate], limit: int
) -> list[tuple[int, float]]:
    """Up to ``limit`` of ``spare`` (pool index, relevance), most relevant first, each bringing at
    least ``NOVEL_WORDS`` content words that neither ``chosen`` nor the lines added before it have:
    a fact cut by a bar or by the line limit comes back when the section does not state it yet, a
    line that says again what the section says does not."""
    have: set[str] = set()
    for i, _ in chosen:
        have |= terms(pool[i].text)
    out: list[tuple[int, float]] = []
    for r in sorted(spare, key=lambda r: (-r[1], r[0])):
        if len(out) >= limit:
            break
        near = [j for j, _ in [*chosen, *out] if pool[j].n == pool[r[0]].n and abs(j - r[0]) <= NOVEL_NEAR]
        if not near:
            continue
        words = terms(pool[r[0]].text)
        if len(words - have) >= NOVEL_WORDS:
            out.append(r)
            have |= words
    return out


#: Lines one source may give a section while another source still has a line to give (a share of the section).
PER_SOURCE = 0.5


def spread(rows: Sequence[tuple[int, float]], pool: Sequence[Candidate], limit: int) -> list[tuple[int, float]]:
    """At most ``limit`` of ``rows`` (pool index, relevance), spread over their sources: sources are
    taken best first and each one's sentences in reading order (a passage that answers the question
    is quoted, not cherry-picked), but one source gives at most ``PER_SOURCE`` of the lines while
    other sources still have lines to give, so a long first source does not crowd out the facts of
    the next ones. Returns the chosen rows in that order."""
    best: dict[int, float] = {}
    for i, score in rows:
        best[pool[i].n] = max(best.get(pool[i].n, 0.0), score)
    order = sorted(rows, key=lambda r: (-best[pool[r[0]].n], pool[r[0]].n, r[0]))
    cap = max(2, math.ceil(PER_SOURCE * limit))
    taken: dict[int, int] = {}
    first: list[tuple[int, float]] = []
    later: list[tuple[int, float]] = []
    for r in order:
        n = pool[r[0]].n
        (first if taken.get(n, 0) < cap else later).append(r)
        taken[n] = taken.get(n, 0) + 1
    return (first + later)[:limit]


def rerank(hits: Sequence[Hit], query: str, anchor: str, meaning: Meaning, k: int) -> list[Hit]:
    """The ``k`` of ``hits`` closest in meaning to ``query`` and to ``anchor`` (the report's
    question), best first: the search engine's wider net (BM25 finds exact API names, embeddings
    paraphrases) re-judged by what the section is about, so a passage that only shares words with
    a key question, or that is about another subject, gives way to one about the question."""
    if len(hits) <= 1:
        return list(hits)[:k]
    texts = [f"{h.title}\n{h.text}" for h in hits]
    sims = meaning.matrix(texts, [query, anchor])
    value = _QUERY * sims[:, 0] + (1 - _QUERY) * sims[:, 1]
    order = sorted(range(len(hits)), key=lambda i: (-float(value[i]), i))
    return [hits[i] for i in order[:k]]


#: In re-ranking, the weight of a passage's similarity to its key question (the rest: to the report's question).
_QUERY = 0.5
#: Seed searches ask the engine for this many times the passages they keep, then re-rank them.
RERANK_POOL = 5


_SENT = re.compile(r"(?<=[.!?])\s+(?=\S)")
_CITES = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]")


def ground(text: str, evidence: Sequence[Picked], meaning: Meaning) -> tuple[str, list[int], int]:
    """Model prose reduced to the sentences an evidence sentence supports, each ending with that
    evidence's citation; returns (text, citations, sentences dropped). A sentence that only
    repeats an evidence line is dropped too: the evidence line says it, with its citation."""
    if not evidence:
        return "", [], len([s for s in _SENT.split(text) if s.strip()])
    out_paras: list[str] = []
    cited: list[int] = []
    dropped = 0
    ev_texts = [p.candidate.text for p in evidence]
    for para in re.split(r"\n\s*\n", text):
        kept: list[str] = []
        for raw in _SENT.split(para.strip()):
            sentence = _CITES.sub("", raw).strip()
            if len(sentence.split()) < 4:
                if sentence:
                    dropped += 1
                continue
            sims = meaning.matrix([sentence], ev_texts)[0]
            best = int(np.argmax(sims))
            if float(sims[best]) < meaning.t.supported or any(near_copy(sentence, e) for e in ev_texts):
                dropped += 1
                continue
            n = evidence[best].candidate.n
            punct = sentence[-1] if sentence[-1] in ".!?" else "."
            kept.append(f"{sentence.rstrip('.!?')} [{n}]{punct}")
            cited.append(n)
        if kept:
            out_paras.append(" ".join(kept))
    return "\n\n".join(out_paras), cited, dropped
