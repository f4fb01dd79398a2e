"""Text units of retrieval: one tokenizer and stop list, passages, sentences, boilerplate.

Everything that compares words in Conclave's search and research code uses ``tokenize`` and
``terms`` from here, so BM25, snippets, evidence extracts and lexical fallbacks agree on what a
word is. Boilerplate is recognised once, here, for every corpus: pydoc's headers and class trees,
Sphinx navigation, and lines that are signatures or dotted names rather than prose. A passage that
is mostly boilerplate is not indexed at all; a sentence that is boilerplate is never an extract.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "STOP",
    "Hit",
    "Passage",
    "clean_line",
    "document_of",
    "entry_of",
    "in_document",
    "is_boilerplate",
    "is_prose",
    "prose_sentences",
    "sentences",
    "snippet",
    "split_passages",
    "terms",
    "tokenize",
]

_TOKEN = re.compile(r"[a-z0-9_]+")
#: One stop list: function words and question words, which say nothing about a topic.
STOP = frozenset(
    "a an and are as at be been but by can could do does did for from had has have how i if in into is it "
    "its me my not of on or our should so such than that the their them then there these they this those "
    "to us was we were what when where which while who whom why will with would you your about between "
    "also may might must any some each other more most very just only own same too".split()
)
PASSAGE_CHARS = 900


@dataclass(frozen=True)
class Passage:
    """A retrieval unit: ``source`` is a stable id (``python-docs/...#anchor``, a file path)."""

    title: str
    source: str
    text: str


@dataclass(frozen=True)
class Hit:
    title: str
    source: str
    text: str
    score: float
    snippet: str = ""


#: File extensions that end a source's path (not a dotted API name): ``functools.html``, ``notes.md``.
_FILE_EXT = re.compile(r"\.(html?|md|markdown|rst|txt)$", re.I)


_CHUNK = re.compile(r"#\d+$")


def document_of(source: str) -> str:
    """The document a passage belongs to, from its source id: the id without its ``#fragment``
    and, where the last name is dotted (an API entry: ``python-docs/module/enum.auto``), without
    the entry's own name — so every entry of a module, every passage of a page or file, has one
    document (``python-docs/module/enum``, ``python-docs/library/functools.html``, ``notes/a.md``).
    Searching a document's passages is how a search digs into the module its best hits come from."""
    base = source.split("#", 1)[0]
    head, _, last = base.rpartition("/")
    if "." in last and not _FILE_EXT.search(last):
        last = last.rsplit(".", 1)[0]
    return f"{head}/{last}" if head else last


def entry_of(source: str) -> str:
    """The entry a passage is part of: its source id without the chunk number that
    ``split_passages`` appends to a long entry (``enum.Enum#1``, ``enum.Enum#2`` are one entry;
    ``library/enum.html#enum.auto`` is its own)."""
    return _CHUNK.sub("", source)


def in_document(source: str, document: str) -> bool:
    """Whether ``source`` is a passage of ``document`` (or of a document under it: a submodule)."""
    base = source.split("#", 1)[0]
    return base == document or base.startswith(document + ".") or base.startswith(document + "/")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens without stop words or one-letter tokens, in order (with repeats)."""
    return [t for t in _TOKEN.findall(text.lower()) if len(t) > 1 and t not in STOP]


def terms(text: str) -> set[str]:
    """The distinct tokens of ``text``."""
    return set(tokenize(text))


# -- boilerplate -----------------------------------------------------------------------------------

_BOILER_LINE = re.compile(
    r"://|^Python Library Documentation|^Help on (module|package|class|function)\b|automatically generated from"
    r"|It may be incomplete, incorrect|consult the module reference|for accurate signature|inherited from"
    r"|^Method resolution order|^(Methods|Data|Class methods|Static methods|Readonly properties|Data descriptors|"
    r"Data and other attributes)( defined here| inherited)"
    r"|^(NAME|DESCRIPTION|CLASSES|FUNCTIONS|DATA|FILE|MODULE REFERENCE|PACKAGE CONTENTS|SUBMODULES|VERSION|AUTHOR"
    r"|CREDITS)\s*$"
    r"|^(__dict__|__weakref__)\b|dictionary for instance variables|list of weak references to the object"
    r"|^(Table of Contents|Previous topic|Next topic|This Page|Report a Bug|Show Source|Navigation|Quick search)\s*$"
    r"|^(©|Copyright ©)|^Last updated on|Created using Sphinx|^Found a bug\?|^-{8,}\s*$",
    re.IGNORECASE,
)
#: Lines that are structure (pydoc's section names and class-tree markers, Sphinx navigation), not text.
_STRUCTURE = re.compile(
    r"^(Python Library Documentation|Help on (module|package|class|function)\b|Method resolution order"
    r"|(Methods|Data|Class methods|Static methods|Readonly properties|Data descriptors|Data and other attributes)"
    r"( defined here| inherited)"
    r"|(NAME|DESCRIPTION|CLASSES|FUNCTIONS|DATA|FILE|MODULE REFERENCE|PACKAGE CONTENTS|SUBMODULES|VERSION|AUTHOR"
    r"|CREDITS)\s*$|(__dict__|__weakref__)\b|-{8,}\s*$"
    r"|(Table of Contents|Previous topic|Next topic|This Page|Report a Bug|Show Source|Navigation|Quick search)\s*$)"
    r"|://",
    re.IGNORECASE,
)
_CODEISH = re.compile(r"[._(){}=<>\[\]*/\\]")


def clean_line(raw: str) -> str:
    """A line without pydoc's indentation and ``|`` rails, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"^[\s|]+", "", raw)).strip()


def _boiler_line(line: str) -> bool:
    return bool(_BOILER_LINE.search(line))


def is_prose(sentence: str, min_words: int = 5) -> bool:
    """Whether a sentence reads as prose, not a heading, a URL, a signature or a class tree
    (which rank well on keywords and say nothing)."""
    words = sentence.split()
    if len(words) < min_words or _boiler_line(sentence):
        return False
    code = sum(1 for w in words if _CODEISH.search(w.strip(".,;:")) or (w.isupper() and len(w) > 1))
    return code <= len(words) * 0.34


def sentences(text: str) -> list[str]:
    """The sentences of ``text``: paragraphs joined line by line (a heading, a blank line or a
    boilerplate line ends one), split after ``.``, ``!`` or ``?`` (not after ``e.g.``-like
    abbreviations or inside dotted names); boilerplate sentences are dropped."""
    paragraphs: list[str] = []
    current: list[str] = []
    for raw in text.splitlines():
        line = clean_line(raw)
        if not line or line.startswith("#") or _STRUCTURE.search(line):
            if current:
                paragraphs.append(" ".join(current))
                current = []
            continue
        current.append(line)
    if current:
        paragraphs.append(" ".join(current))
    out: list[str] = []
    for para in paragraphs:
        for piece in re.split(r"(?<!\be\.g)(?<!\bi\.e)(?<!\betc)(?<=[.!?])\s+(?=[A-Z\"'(*`])", para):
            piece = piece.strip()
            if piece and not _boiler_line(piece):
                out.append(piece)
    return out


def prose_sentences(text: str, min_chars: int = 25) -> list[str]:
    """The sentences of ``text`` that are prose (see ``is_prose``)."""
    return [s for s in sentences(text) if len(s) >= min_chars and is_prose(s)]


def is_boilerplate(text: str, min_prose_chars: int = 120) -> bool:
    """Whether a passage has too little prose to be worth indexing (a class tree, a header, a list
    of names). Code listings with a sentence of explanation are kept."""
    prose = sum(len(s) for s in prose_sentences(text))
    return prose < min(min_prose_chars, max(40, len(text) // 4))


# -- passages --------------------------------------------------------------------------------------


def split_passages(title: str, source: str, text: str, size: int = PASSAGE_CHARS) -> list[Passage]:
    """Paragraph-aligned passages of about ``size`` characters (short units rank better and fit the
    embedding model's window). More than one passage gets ``#n`` appended to ``source``."""
    chunks: list[str] = []
    buf: list[str] = []
    n = 0
    for para in re.split(r"\n\s*\n", text):
        para = para.strip()
        if not para:
            continue
        while len(para) > size * 2:  # a huge paragraph (a code listing): cut it
            if buf:
                chunks.append("\n\n".join(buf))
                buf, n = [], 0
            chunks.append(para[: size * 2])
            para = para[size * 2 :]
        if n + len(para) > size and buf:
            chunks.append("\n\n".join(buf))
            buf, n = [], 0
        buf.append(para)
        n += len(para)
    if buf:
        chunks.append("\n\n".join(buf))
    if len(chunks) == 1:
        return [Passage(title, source, chunks[0])]
    return [Passage(title, f"{source}#{i}", c) for i, c in enumerate(chunks, 1)]


def snippet(text: str, query_terms: set[str], width: int = 300) -> str:
    """The window of ``text`` with the most query terms, preferring prose."""
    words = text.split()
    if len(words) <= 50:
        return " ".join(words)[:width]
    best, best_at = -1, 0
    for i in range(0, len(words), 10):
        window = words[i : i + 50]
        score = sum(1 for w in window if terms(w) & query_terms)
        if score > best:
            best, best_at = score, i
    return " ".join(words[best_at : best_at + 50])[:width]
