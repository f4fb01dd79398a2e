"""search: hybrid retrieval (bm25s + embeddings, RRF, MMR) over a local folder, boilerplate left
out, vectors cached on disk, the python-docs corpus (Sphinx HTML or pydoc), archiving into sources/,
and corpora added by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conclave.core.workspace import Workspace
from conclave.tools import SearchSettings, ToolContext, ToolSettings
from conclave.tools.base import execute
from conclave.tools.search import (
    Hit,
    HybridIndex,
    Passage,
    SearchTool,
    VectorCache,
    add_corpus,
    document_of,
    embedder,
    entry_of,
    in_document,
    is_boilerplate,
    known_corpora,
    overview,
    python_docs_path,
    tokenize,
)
from conclave.tools.search.sphinx import page_passages

from .._corpora import shared_python_docs

needs_model = pytest.mark.skipif(embedder() is None, reason="the cpu extra (embedding model) is not installed")


def test_one_tokenizer_drops_stop_words_and_keeps_identifiers() -> None:
    assert tokenize("How does the functools.lru_cache decorator work?") == [
        "functools",
        "lru_cache",
        "decorator",
        "work",
    ]


def test_bm25_ranks_the_passage_with_rare_matching_terms_first() -> None:
    index = HybridIndex(
        [
            Passage("rivers", "a", "the river flows to the sea; rivers carry water"),
            Passage("mountains", "b", "mountains are high; the sea is far"),
            Passage("deltas", "c", "a delta forms where a river meets the sea"),
        ]
    )
    hits = index.search("river delta", 3, diversify=False)
    assert [h.source for h in hits] == ["c", "a"]  # b shares no term
    assert index.search("zebra", 3) == []


PYDOC_HEADER = (
    "Python Library Documentation: module functools\n\nNAME\n    functools - functools.py - Tools for working "
    "with functions\n\nMODULE REFERENCE\n    https://docs.python.org/3.11/library/functools.html\n\n"
    "    The following documentation is automatically generated from the Python\n    source files.  It may be "
    "incomplete, incorrect or include features that\n    are considered implementation detail.\n"
)
CLASS_TREE = (
    "CLASSES\n    builtins.object\n        cached_property\n        partial\n        partialmethod\n\n"
    "    class partial(builtins.object)\n     |  Methods defined here:\n     |  __call__(self, /, *args)\n"
    "     |  ----------------------------------------------------------------------\n"
    "     |  Data descriptors defined here:\n     |  __dict__\n     |      dictionary for instance variables\n"
)
LRU = (
    "Least-recently-used cache decorator. If maxsize is set to None, the LRU features are disabled and the "
    "cache can grow without bound. If typed is True, arguments of different types will be cached separately. "
    "View the cache statistics with f.cache_info() and clear it with f.cache_clear()."
)


def test_boilerplate_passages_are_recognised() -> None:
    assert is_boilerplate(PYDOC_HEADER)
    assert is_boilerplate(CLASS_TREE)
    assert not is_boilerplate(LRU)


@needs_model
async def test_retrieval_ranks_a_relevant_passage_above_boilerplate_that_shares_its_words(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "header.txt").write_text(PYDOC_HEADER)
    (docs / "tree.txt").write_text(CLASS_TREE + "     |  lru_cache(maxsize=128, typed=False)\n     |  cache_info()\n")
    (docs / "lru.txt").write_text("functools.lru_cache(maxsize=128, typed=False)\n\n" + LRU)
    (docs / "other.txt").write_text("The heapq module implements a priority queue with heappush and heappop.")
    tool = SearchTool(ToolSettings(search=SearchSettings(corpora={"d": docs}, cache_dir=tmp_path / "c")))
    hits = await tool.provider("d").search("what does functools lru_cache do with maxsize", 3)
    assert hits[0].source.startswith("lru.txt")
    assert not any(h.source.startswith(("header.txt", "tree.txt")) for h in hits)  # not even indexed


@needs_model
def test_dense_retrieval_finds_a_paraphrase_bm25_cannot_match() -> None:
    passages = [
        Passage(
            "tasks", "t", "A coroutine wrapped in a Task is scheduled to run soon on the event loop, concurrently."
        ),
        Passage("pickle", "p", "The pickle module converts Python objects to a byte stream and back."),
        Passage("socket", "s", "Sockets send and receive bytes over a network connection."),
    ]
    index = HybridIndex(passages, embedder())
    assert index.bm25_scores("cooperative multitasking").max() == 0  # no shared word
    assert index.search("cooperative multitasking", 1)[0].source == "t"


@needs_model
def test_mmr_does_not_return_near_copies_of_one_paragraph() -> None:
    same = "The lock is released when the with block ends, even if an exception is raised inside it."
    passages = [Passage(f"copy {i}", f"c{i}", same + f" (alias {i})") for i in range(4)] + [
        Passage("rlock", "r", "A reentrant lock may be acquired again by the thread that already holds it."),
    ]
    index = HybridIndex(passages, embedder())
    plain = [h.source for h in index.search("is the lock released if an exception is raised", 2, diversify=False)]
    diverse = [h.source for h in index.search("is the lock released if an exception is raised", 2)]
    assert all(s.startswith("c") for s in plain)  # relevance alone: two copies
    assert "r" in diverse and sum(s.startswith("c") for s in diverse) == 1


@needs_model
def test_vectors_are_cached_on_disk_and_only_new_text_is_embedded(tmp_path: Path) -> None:
    e = embedder()
    assert e is not None
    calls: list[int] = []

    def counting(texts: object) -> object:
        calls.append(len(texts))  # type: ignore[arg-type]
        return e.embed(texts)  # type: ignore[arg-type]

    texts = ["alpha beta gamma", "delta epsilon", "zeta eta theta"]
    VectorCache(tmp_path, e.model_id).vectors(texts, counting)  # type: ignore[arg-type]
    again = VectorCache(tmp_path, e.model_id)  # a new process: read from disk
    v = again.vectors([*texts, "iota kappa"], counting, prune=True)  # type: ignore[arg-type]
    assert calls == [3, 1] and v.shape == (4, 384)
    assert abs(float(v[0] @ e.embed_one("alpha beta gamma")) - 1) < 1e-4


async def test_local_folder_corpus_and_archive(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "valkey.md").write_text("# Valkey\n\nValkey is a key-value store forked from Redis, with the same API.\n")
    (docs / "sub" / "ray.html").write_text(
        "<html><head><title>Ray</title><script>var x;</script></head><body><p>Ray runs actors and remote "
        "tasks across a cluster of machines.</p></body></html>"
    )
    (docs / "ignored.bin").write_bytes(b"\x00key-value")
    cfg = SearchSettings(corpora={"mine": docs}, default_corpus="mine", cache_dir=tmp_path / "c")
    tool = SearchTool(ToolSettings(search=cfg))
    ws = Workspace()
    r = await execute(tool, {"query": "key-value store"}, ToolContext(workspace=ws))
    assert not r.is_error and r.content.startswith("1. Valkey — valkey.md")
    saved = ws.list("knowledge_base/sources")
    assert len(saved) >= 1 and "forked from Redis" in ws.read(saved[0])
    r = await execute(tool, {"query": "actors"}, ToolContext(workspace=ws))
    assert "Ray — sub/ray.html" in r.content
    assert all("var x" not in ws.read(p) for p in ws.list("knowledge_base/sources"))  # scripts dropped
    r = await execute(tool, {"query": "x", "corpus": "nope"}, ToolContext(workspace=ws))
    assert r.is_error and "unknown corpus 'nope'; available: mine, python-docs" in r.content


async def test_a_corpus_added_by_name_is_searchable_and_listed(tmp_path: Path) -> None:
    docs = tmp_path / "notes"
    docs.mkdir()
    (docs / "a.md").write_text("# Tides\n\nTides are caused mainly by the gravity of the Moon acting on the oceans.\n")
    cfg = SearchSettings(cache_dir=tmp_path / "c")
    info = add_corpus("tides", docs, cfg)
    assert info.passages == 1 and info.name == "tides"
    assert known_corpora(cfg) == {"tides": docs.resolve()}
    tool = SearchTool(ToolSettings(search=cfg))
    assert tool.corpora() == ["python-docs", "tides"]
    hits = await tool.provider("tides").search("what causes tides", 2)
    assert hits and hits[0].source == "a.md"
    for bad, why in (("Bad Name", "lower-case"), ("python-docs", "built-in"), ("x", "not a folder")):
        with pytest.raises(ValueError, match=why):
            add_corpus(bad, docs if why != "not a folder" else tmp_path / "missing", cfg)


SPHINX_PAGE = """<html><head><title>functools</title></head><body>
<div class="related" role="navigation"><ul><li>previous</li><li>next</li></ul></div>
<div class="document"><div class="body" role="main">
<section id="module-functools"><h1>functools — Higher-order functions<a class="headerlink" href="#m">¶</a></h1>
<p>The functools module is for higher-order functions: functions that act on or return other functions.</p>
<dl class="py function">
<dt class="sig sig-object py" id="functools.lru_cache">@functools.lru_cache(maxsize=128, typed=False)
<a class="headerlink" href="#functools.lru_cache">¶</a></dt>
<dd><p>Decorator to wrap a function with a memoizing callable that saves up to the maxsize most recent calls.</p>
<p>If typed is set to true, function arguments of different types will be cached separately.</p></dd></dl>
<section id="examples"><h2>Examples<a class="headerlink" href="#examples">¶</a></h2>
<p>Here is an example of an LRU cache for static web content, which caches the most popular pages.</p>
</section></section></div></div>
<div class="footer">© Copyright 2001-2023, Python Software Foundation. Last updated on Jan 01.</div>
</body></html>"""


def test_sphinx_pages_are_cut_at_api_entries_and_headings_without_navigation() -> None:
    ps = page_passages(SPHINX_PAGE, "library/functools.html")
    by = {p.source: p for p in ps}
    assert list(by) == [
        "python-docs/library/functools.html#module-functools",
        "python-docs/library/functools.html#functools.lru_cache",
        "python-docs/library/functools.html#examples",
    ]
    lru = by["python-docs/library/functools.html#functools.lru_cache"]
    assert lru.title == "@functools.lru_cache(maxsize=128, typed=False)"
    assert "maxsize most recent calls" in lru.text and "typed is set to true" in lru.text
    assert by["python-docs/library/functools.html#examples"].title == "functools — Higher-order functions › Examples"
    text = " ".join(p.text for p in ps)
    assert "¶" not in text and "previous" not in text and "Copyright" not in text


async def test_python_docs_indexes_installed_html_documentation(tmp_path: Path) -> None:
    root = tmp_path / "html"
    (root / "library").mkdir(parents=True)
    (root / "library" / "index.html").write_text("<div role='main'><h1>The Python Standard Library</h1></div>")
    (root / "library" / "functools.html").write_text(SPHINX_PAGE)
    (root / "whatsnew").mkdir()
    (root / "whatsnew" / "3.11.html").write_text(SPHINX_PAGE.replace("functools", "whatsnew"))
    cfg = SearchSettings(cache_dir=tmp_path / "c", python_docs_html=root)
    tool = SearchTool(ToolSettings(search=cfg))
    r = await execute(tool, {"query": "lru_cache maxsize typed", "max_results": 2}, ToolContext(workspace=Workspace()))
    assert not r.is_error, r.content
    assert "python-docs/library/functools.html#functools.lru_cache" in r.content and "whatsnew" not in r.content
    built = python_docs_path(tmp_path / "c", root)
    assert built.is_file() and json.loads(built.read_text())["source"] == "html"
    forced = SearchSettings(cache_dir=tmp_path / "c", python_docs_html=tmp_path / "none", python_docs="html")
    r = await execute(SearchTool(ToolSettings(search=forced)), {"query": "x"}, ToolContext(workspace=Workspace()))
    assert r.is_error and "no library/index.html" in r.content


async def test_python_docs_pydoc_fallback_is_built_once_and_searchable() -> None:
    """The default path on a machine without python3-doc: docstrings and topics that ship with Python
    (built once per machine into the tests' shared cache, then read from it)."""
    cfg = shared_python_docs()
    tool = SearchTool(ToolSettings(search=cfg))
    ws = Workspace()
    r = await execute(tool, {"query": "json dumps serialize obj", "max_results": 3}, ToolContext(workspace=ws))
    assert not r.is_error, r.content
    assert "python-docs/module/json" in r.content
    path = python_docs_path(cfg.cache_dir)
    assert path.is_file() and json.loads(path.read_text())["source"] == "pydoc"
    built = path.stat().st_mtime
    r = await execute(tool, {"query": "with statement context manager"}, ToolContext(workspace=ws))
    assert "python-docs/topic/" in r.content and path.stat().st_mtime == built
    assert len(ws.list("knowledge_base/sources")) >= 4
    text = " ".join(ws.read(p) for p in ws.list("knowledge_base/sources"))
    assert "It may be incomplete" not in text and "Data descriptors defined here" not in text


async def test_python_docs_pydoc_fallback_documents_the_submodules_of_packages() -> None:
    """A question about ``urllib.parse`` or ``concurrent.futures`` finds their own entries: a
    top-level import of a package does not load them, so the corpus walks the public submodules
    (not private ones, not test packages)."""
    cfg = shared_python_docs()
    tool = SearchTool(ToolSettings(search=cfg))
    r = await execute(
        tool,
        {"query": "urlparse split a URL into scheme netloc path", "max_results": 3},
        ToolContext(workspace=Workspace()),
    )
    assert "python-docs/module/urllib.parse" in r.content, r.content
    sources = [s for _, s, _ in json.loads(python_docs_path(cfg.cache_dir).read_text())["passages"]]
    modules = {s.split("/")[2].split("#")[0] for s in sources if s.startswith("python-docs/module/")}
    assert "concurrent.futures.ThreadPoolExecutor" in modules or any(
        m.startswith("concurrent.futures.") for m in modules
    )
    assert not any(".test." in m or ".tests." in m or "._" in m for m in modules)


def test_a_modules_entries_and_a_pages_sections_belong_to_one_document() -> None:
    """``document_of`` is what a search digs into: every entry of a module (and every chunk of a long
    entry), every section of an HTML page, every part of a file."""
    for source in ("python-docs/module/enum.auto", "python-docs/module/enum.Enum#2", "python-docs/module/enum"):
        assert document_of(source) == "python-docs/module/enum"
    assert document_of("python-docs/library/functools.html#functools.lru_cache") == "python-docs/library/functools.html"
    assert document_of("notes/tasks.md#3") == "notes/tasks.md"
    assert document_of("python-docs/topic/compound#5") == "python-docs/topic/compound"
    assert entry_of("python-docs/module/enum.Enum#2") == "python-docs/module/enum.Enum"
    page = "python-docs/library/enum.html"
    assert entry_of(f"{page}#enum.auto") == f"{page}#enum.auto"  # an HTML page's entries are its anchors
    assert entry_of(f"{page}#enum.Enum#2") == f"{page}#enum.Enum"
    assert in_document("python-docs/module/logging.handlers.SysLogHandler#1", "python-docs/module/logging")
    assert not in_document("python-docs/module/enumerate", "python-docs/module/enum")


def test_a_search_within_a_document_ranks_only_its_passages() -> None:
    index = HybridIndex(
        [
            Passage("rivers", "geo/rivers.md#1", "a river carries water to the sea"),
            Passage("deltas", "geo/rivers.md#2", "a delta forms where a river slows near its mouth"),
            Passage("delta airlines", "travel/airlines.md", "delta river delta river: a delta of river flights"),
        ]
    )
    everywhere = [h.source for h in index.search("river delta", 3, diversify=False)]
    assert everywhere[0] == "travel/airlines.md"  # the best match overall is in another document
    within = [h.source for h in index.search("river delta", 3, diversify=False, within="geo/rivers.md")]
    assert within == ["geo/rivers.md#2", "geo/rivers.md#1"]


def test_an_overview_lists_the_entries_the_hits_lack_one_line_each() -> None:
    doc = "python-docs/module/colors"
    ranked = [
        Hit("colors.Palette", f"{doc}.Palette#1", "colors.Palette(names)\nA palette of named colours.\n\nMore.", 0),
        Hit("colors.Palette", f"{doc}.Palette#2", "The palette keeps its names in order. It can be copied.", 0),
        Hit("colors.mix", f"{doc}.mix", "colors.mix(a, b, weight=0.5)\nBlend two colours by weight. Then more.", 0),
        Hit("colors", doc, "Colour names and palettes, for terminals and the web.", 0),
        Hit("colors.parse", f"{doc}.parse", "colors.parse(text)\nRead a colour from a hex string.", 0),
        Hit("colors.rgb", f"{doc}.rgb", "colors.rgb(r, g, b)\nA colour from its red, green and blue parts.", 0),
    ]
    ov = overview(doc, ranked, have={f"{doc}.Palette#1"}, n=5, min_lines=2)
    assert ov is not None and ov.source == f"{doc}#entries"
    assert ov.text.split("\n\n") == [
        "colors.mix(a, b, weight=0.5): Blend two colours by weight.",  # the entry's signature and first sentence
        "colors.parse(text): Read a colour from a hex string.",
        "colors.rgb(r, g, b): A colour from its red, green and blue parts.",
    ]  # Palette is archived already (all its chunks); the module's own prose is not an entry
    assert overview(doc, ranked, have={f"{doc}.mix", f"{doc}.parse", f"{doc}.rgb"}, n=5, min_lines=2) is None


def test_hosted_providers_need_a_key() -> None:
    with pytest.raises(ValueError, match="needs api_key"):
        SearchSettings(provider="brave")
