"""The context builder's dig into a module: on the real pydoc corpus, the overview of the best hit's
module holds the short entries that the plain search (and its re-ranking) leaves below the cut."""

from __future__ import annotations

import pytest

from conclave.agents.research.build import OVERVIEW_POOL
from conclave.agents.research.evidence import Meaning, rerank
from conclave.tools.search import PythonDocsProvider, document_of, embedder, entry_of, in_document, overview

from .._corpora import shared_python_docs

needs_model = pytest.mark.skipif(embedder() is None, reason="the cpu extra (embedding model) is not installed")


@needs_model
async def test_an_overview_of_the_best_hits_module_holds_entries_the_search_left_out() -> None:
    """The diagnosis of docs/research.md: a question about a module gets its long class docstrings,
    and the short entries that hold the other facts rank below the cut; searching within the best
    hit's module and listing its entries brings them in."""
    provider = PythonDocsProvider(shared_python_docs())
    question = "How do you define enumerations with Python's enum module?"
    meaning = Meaning()
    hits = rerank(await provider.search(question, 15), question, question, meaning, 3)
    doc = document_of(hits[0].source)
    assert doc == "python-docs/module/enum"
    inside = await provider.search(question, OVERVIEW_POOL, within=doc)
    assert inside and all(in_document(h.source, doc) for h in inside)
    top = " ".join(h.text for h in hits)
    assert "enum.auto(" not in top and "enum.unique(" not in top
    ov = overview(doc, rerank(inside, question, question, meaning, len(inside)), {h.source for h in hits}, 12)
    assert ov is not None and "enum.auto(" in ov.text and "enum.unique(" in ov.text
    assert not any(
        line.startswith(entry_of(h.source).rsplit("/", 1)[-1] + "(") for h in hits for line in ov.text.split("\n\n")
    )
