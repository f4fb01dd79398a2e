"""Hosted search providers (Brave, Tavily), configured by key in ``tools.search``. They are not
exercised by the tests (no network)."""

from __future__ import annotations

import httpx

from ..base import ToolError
from .text import Hit

__all__ = ["BraveProvider", "TavilyProvider"]


class BraveProvider:
    """Brave Search API (``X-Subscription-Token``)."""

    name = "brave"

    def __init__(self, api_key: str, endpoint: str | None = None, timeout_s: float = 20.0) -> None:
        self.api_key = api_key
        self.endpoint = endpoint or "https://api.search.brave.com/res/v1/web/search"
        self.timeout_s = timeout_s

    async def search(self, query: str, k: int) -> list[Hit]:
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            r = await client.get(
                self.endpoint,
                params={"q": query, "count": k},
                headers={"X-Subscription-Token": self.api_key, "Accept": "application/json"},
            )
        if r.status_code != 200:
            raise ToolError(f"brave search answered HTTP {r.status_code}: {r.text[:200]}")
        results = r.json().get("web", {}).get("results", [])
        return [
            Hit(x.get("title", ""), x.get("url", ""), x.get("description", ""), 1.0 / (i + 1), x.get("description", ""))
            for i, x in enumerate(results[:k])
        ]


class TavilyProvider:
    """Tavily search API (key in the request body)."""

    name = "tavily"

    def __init__(self, api_key: str, endpoint: str | None = None, timeout_s: float = 30.0) -> None:
        self.api_key = api_key
        self.endpoint = endpoint or "https://api.tavily.com/search"
        self.timeout_s = timeout_s

    async def search(self, query: str, k: int) -> list[Hit]:
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            r = await client.post(self.endpoint, json={"api_key": self.api_key, "query": query, "max_results": k})
        if r.status_code != 200:
            raise ToolError(f"tavily search answered HTTP {r.status_code}: {r.text[:200]}")
        results = r.json().get("results", [])
        return [
            Hit(
                x.get("title", ""),
                x.get("url", ""),
                x.get("content", ""),
                float(x.get("score", 0)),
                x.get("content", "")[:300],
            )
            for x in results[:k]
        ]
