"""The ``search`` tool: a provider per corpus, and every hit archived into ``knowledge_base/sources/``
so the agent can read it in full."""

from __future__ import annotations

from typing import Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field

from .._text import archive_source
from ..base import Tool, ToolContext, ToolError, ToolResult
from ..settings import SearchSettings, ToolSettings
from .corpora import PYTHON_DOCS, LocalCorpusProvider, PythonDocsProvider, cache_dir, known_corpora
from .hosted import BraveProvider, TavilyProvider
from .text import Hit

__all__ = ["SearchArgs", "SearchProvider", "SearchTool"]


class SearchProvider(Protocol):
    """Anything that turns a query into ranked hits."""

    name: str

    async def search(self, query: str, k: int) -> list[Hit]: ...


class SearchArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=500, description="What to search for.")
    corpus: str | None = Field(default=None, max_length=100, description="A named local corpus, e.g. python-docs.")
    max_results: int | None = Field(default=None, ge=1, le=20)


class SearchTool(Tool):
    name = "search"
    description = "Search documents; each result is also saved in knowledge_base/sources/ for reading in full."
    Args = SearchArgs

    def __init__(self, settings: ToolSettings | None = None) -> None:
        self.cfg: SearchSettings = (settings or ToolSettings()).search

    def corpora(self) -> list[str]:
        return sorted({PYTHON_DOCS, *known_corpora(self.cfg)})

    def provider(self, corpus: str | None) -> SearchProvider:
        cfg = self.cfg
        if corpus is None and cfg.provider != "local":
            assert cfg.api_key is not None
            key = cfg.api_key.get_secret_value()
            return BraveProvider(key, cfg.endpoint) if cfg.provider == "brave" else TavilyProvider(key, cfg.endpoint)
        name = corpus or cfg.default_corpus
        folders = known_corpora(cfg)
        if name in folders:
            return LocalCorpusProvider(folders[name], name, cache_dir(cfg))
        if name == PYTHON_DOCS:
            return PythonDocsProvider(cfg)
        raise ToolError(f"unknown corpus {name!r}; available: {', '.join(self.corpora())}")

    async def run(self, args: SearchArgs, ctx: ToolContext) -> ToolResult:
        provider = self.provider(args.corpus)
        k = args.max_results or self.cfg.max_results
        try:
            hits = await provider.search(args.query, k)
        except httpx.HTTPError as e:
            raise ToolError(f"search provider {provider.name} failed: {e}") from None
        if not hits:
            return ToolResult(f"no results for {args.query!r} in {provider.name}", data={"hits": 0})
        lines = []
        saved = []
        for n, h in enumerate(hits, 1):
            where = ""
            if self.cfg.archive:
                path = archive_source(
                    ctx.workspace, title=h.title, source=h.source, text=h.text, note=f"found by search: {args.query}"
                )
                saved.append(path)
                where = f" [saved: {path}]"
            lines.append(f"{n}. {h.title} — {h.source}{where}\n   {h.snippet}")
        return ToolResult("\n".join(lines), data={"hits": len(hits), "provider": provider.name, "saved": saved})
