"""search: BM25 over a local folder, the built-in python-docs corpus, archiving into sources/."""

from __future__ import annotations

from pathlib import Path

import pytest

from conclave.core.workspace import Workspace
from conclave.tools import SearchSettings, ToolContext, ToolSettings
from conclave.tools.base import execute
from conclave.tools.search import BM25Index, Passage, SearchTool, python_docs_path


def test_bm25_ranks_the_passage_with_rare_matching_terms_first() -> None:
    index = BM25Index(
        [
            Passage("rivers", "a", "the river flows to the sea; rivers carry water"),
            Passage("mountains", "b", "mountains are high; the sea is far"),
            Passage("deltas", "c", "a delta forms where a river meets the sea"),
        ]
    )
    hits = index.search("river delta", 3)
    assert [h.source for h in hits] == ["c", "a"]  # b shares no term
    assert index.search("zebra", 3) == []


async def test_local_folder_corpus_and_archive(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "valkey.md").write_text("# Valkey\n\nValkey is a key-value store forked from Redis.\n")
    (docs / "sub" / "ray.html").write_text(
        "<html><head><title>Ray</title><script>var x;</script></head><body><p>Ray runs actors.</p></body></html>"
    )
    (docs / "ignored.bin").write_bytes(b"\x00key-value")
    tool = SearchTool(ToolSettings(search=SearchSettings(corpora={"mine": docs}, default_corpus="mine")))
    ws = Workspace()
    r = await execute(tool, {"query": "key-value store"}, ToolContext(workspace=ws))
    assert not r.is_error and r.content.startswith("1. Valkey — valkey.md#1")
    saved = ws.list("knowledge_base/sources")
    assert len(saved) == 1 and "forked from Redis" in ws.read(saved[0])
    r = await execute(tool, {"query": "actors"}, ToolContext(workspace=ws))
    assert "Ray — sub/ray.html#1" in r.content
    assert all("var x" not in ws.read(p) for p in ws.list("knowledge_base/sources"))  # scripts dropped
    r = await execute(tool, {"query": "x", "corpus": "nope"}, ToolContext(workspace=ws))
    assert r.is_error and "unknown corpus 'nope'; available: mine, python-docs" in r.content


async def test_python_docs_corpus_is_built_once_and_searchable(tmp_path: Path) -> None:
    tool = SearchTool(ToolSettings(search=SearchSettings(cache_dir=tmp_path / "corpora")))
    ws = Workspace()
    r = await execute(tool, {"query": "json dumps serialize obj", "max_results": 3}, ToolContext(workspace=ws))
    assert not r.is_error, r.content
    assert "python-docs/module/json" in r.content
    path = python_docs_path(tmp_path / "corpora")
    assert path.is_file()
    built = path.stat().st_mtime
    r = await execute(tool, {"query": "with statement context manager"}, ToolContext(workspace=ws))
    assert "python-docs/topic/" in r.content and path.stat().st_mtime == built
    assert len(ws.list("knowledge_base/sources")) >= 4


def test_hosted_providers_need_a_key() -> None:
    with pytest.raises(ValueError, match="needs api_key"):
        SearchSettings(provider="brave")
