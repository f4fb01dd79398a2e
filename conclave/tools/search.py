"""``search``: a provider interface, a local BM25 provider, the built-in ``python-docs`` corpus,
and hosted HTTP providers.

The local provider searches a folder of ``.txt``, ``.md``, ``.rst`` and ``.html`` files (PDFs should be
converted to text first), split into passages and ranked with BM25 (Okapi, k1=1.5, b=0.75). The
index lives in memory, built in a thread on first use and rebuilt when the folder changes.

``python-docs`` is Python's own documentation, which ships with every Python: the language-reference
topics of ``pydoc_data.topics`` and the pydoc-rendered documentation of the standard-library modules.
It is built once, in a separate process (importing every stdlib module must not touch the worker),
and cached under ``$CONCLAVE_HOME/corpora``.

Hosted providers (Brave, Tavily) are configured by key in ``tools.search``; they are not exercised by
the tests. Every hit is archived into ``knowledge_base/sources/`` so the agent can read it in full.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field

from conclave.core.paths import default_home

from ._text import archive_source, html_to_text
from .base import Tool, ToolContext, ToolError, ToolResult
from .settings import SearchSettings, ToolSettings

__all__ = [
    "BM25Index",
    "BraveProvider",
    "Hit",
    "LocalCorpusProvider",
    "Passage",
    "SearchProvider",
    "SearchTool",
    "TavilyProvider",
    "build_python_docs",
    "python_docs_path",
]

PYTHON_DOCS = "python-docs"
_CORPUS_VERSION = 1
_TOKEN = re.compile(r"[a-z0-9_]+")
_STOP = frozenset(
    "a an and are as at be by for from has have in is it its of on or that the this to was were will with "
    "what which how when why who can do does you your".split()
)
_EXTS = {".txt", ".md", ".markdown", ".rst", ".html", ".htm"}
_PASSAGE_CHARS = 1_500


def tokenize(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if len(t) > 1 and t not in _STOP]


@dataclass(frozen=True)
class Passage:
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


def split_passages(title: str, source: str, text: str, size: int = _PASSAGE_CHARS) -> list[Passage]:
    """Paragraph-aligned passages of about ``size`` characters (BM25 works best on short units)."""
    out: list[Passage] = []
    buf: list[str] = []
    n = 0
    for para in re.split(r"\n\s*\n", text):
        para = para.strip()
        if not para:
            continue
        while len(para) > size * 2:  # a huge paragraph (a code listing): cut it
            out.append(Passage(title, f"{source}#{len(out) + 1}", para[: size * 2]))
            para = para[size * 2 :]
        if n + len(para) > size and buf:
            out.append(Passage(title, f"{source}#{len(out) + 1}", "\n\n".join(buf)))
            buf, n = [], 0
        buf.append(para)
        n += len(para)
    if buf:
        out.append(Passage(title, f"{source}#{len(out) + 1}", "\n\n".join(buf)))
    return out


class BM25Index:
    """Okapi BM25 over passages; the title counts as part of the text."""

    def __init__(self, passages: Iterable[Passage], k1: float = 1.5, b: float = 0.75) -> None:
        self.passages = list(passages)
        self.k1, self.b = k1, b
        self.postings: dict[str, list[tuple[int, int]]] = {}
        self.lengths: list[int] = []
        for i, p in enumerate(self.passages):
            tf = Counter(tokenize(p.title + "\n" + p.text))
            self.lengths.append(sum(tf.values()))
            for term, n in tf.items():
                self.postings.setdefault(term, []).append((i, n))
        self.avgdl = (sum(self.lengths) / len(self.lengths)) if self.lengths else 1.0

    def search(self, query: str, k: int = 5) -> list[Hit]:
        scores: dict[int, float] = {}
        n_docs = len(self.passages)
        terms = set(tokenize(query))
        for term in terms:
            posting = self.postings.get(term)
            if not posting:
                continue
            idf = math.log(1 + (n_docs - len(posting) + 0.5) / (len(posting) + 0.5))
            for i, tf in posting:
                norm = tf + self.k1 * (1 - self.b + self.b * self.lengths[i] / self.avgdl)
                scores[i] = scores.get(i, 0.0) + idf * tf * (self.k1 + 1) / norm
        best = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        return [
            Hit(
                self.passages[i].title,
                self.passages[i].source,
                self.passages[i].text,
                s,
                snippet(self.passages[i].text, terms),
            )
            for i, s in best
        ]


def snippet(text: str, terms: set[str], width: int = 300) -> str:
    """The window of ``text`` with the most query terms."""
    words = text.split()
    if len(words) <= 50:
        return " ".join(words)[:width]
    best, best_at = -1, 0
    for i in range(0, len(words), 10):
        window = words[i : i + 50]
        score = sum(1 for w in window if tokenize(w) and tokenize(w)[0] in terms)
        if score > best:
            best, best_at = score, i
    return " ".join(words[best_at : best_at + 50])[:width]


class SearchProvider(Protocol):
    """Anything that turns a query into ranked hits."""

    name: str

    async def search(self, query: str, k: int) -> list[Hit]: ...


# -- local corpora ------------------------------------------------------------------------------


def _read_folder(folder: Path) -> list[Passage]:
    out: list[Passage] = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in _EXTS or not path.is_file() or path.is_symlink():
            continue
        raw = path.read_text(errors="replace")
        rel = str(path.relative_to(folder))
        if path.suffix.lower() in (".html", ".htm"):
            title, text = html_to_text(raw)
        else:
            text = raw
            first = next((ln.strip("# ").strip() for ln in raw.splitlines() if ln.strip()), "")
            title = first[:120] or rel
        out += split_passages(title or rel, rel, text)
    return out


def _folder_stamp(folder: Path) -> tuple[int, float]:
    n, latest = 0, 0.0
    for path in folder.rglob("*"):
        if path.suffix.lower() in _EXTS:
            n += 1
            latest = max(latest, path.stat().st_mtime)
    return n, latest


_indexes: dict[str, tuple[object, BM25Index]] = {}
_index_lock = threading.Lock()


def _cached_index(key: str, stamp: object, build: Callable[[], BM25Index]) -> BM25Index:
    with _index_lock:
        got = _indexes.get(key)
        if got is not None and got[0] == stamp:
            return got[1]
    index = build()
    with _index_lock:
        _indexes[key] = (stamp, index)
    return index


class LocalCorpusProvider:
    """BM25 over a folder of text files."""

    def __init__(self, folder: Path | str, name: str | None = None) -> None:
        self.folder = Path(folder)
        self.name = name or self.folder.name

    def _index(self) -> BM25Index:
        if not self.folder.is_dir():
            raise ToolError(f"corpus {self.name!r}: folder {self.folder} does not exist")
        stamp = _folder_stamp(self.folder)
        return _cached_index(f"dir:{self.folder.resolve()}", stamp, lambda: BM25Index(_read_folder(self.folder)))

    async def search(self, query: str, k: int) -> list[Hit]:
        index = await asyncio.to_thread(self._index)
        return index.search(query, k)


# -- python-docs --------------------------------------------------------------------------------

_DENY = frozenset(
    "antigravity this idlelib tkinter turtle turtledemo lib2to3 ensurepip pydoc_data test msilib winreg "
    "winsound nt xxsubtype xxlimited ossaudiodev sre_compile sre_parse sre_constants nis spwd crypt msvcrt "
    "pty tty curses readline sitecustomize usercustomize distutils imp asynchat asyncore smtpd".split()
)


def build_python_docs(out: Path) -> int:
    """Write the python-docs corpus to ``out`` (JSON); returns the number of passages. Imports
    standard-library modules, so run it in its own process (``python -m conclave.tools.search``)."""
    import contextlib
    import importlib
    import io
    import pydoc
    import warnings
    from pydoc_data.topics import topics

    warnings.simplefilter("ignore")
    passages: list[Passage] = []
    for name in sorted(topics):
        passages += split_passages(f"Python language reference: {name}", f"python-docs/topic/{name}", topics[name])
    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in _DENY:
            continue
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                module = importlib.import_module(name)
                text = pydoc.render_doc(module, renderer=pydoc.plaintext)  # type: ignore[attr-defined]
        except BaseException:  # noqa: BLE001 - a module that cannot be imported here is left out
            continue
        passages += split_passages(f"Python module {name}", f"python-docs/module/{name}", text[:300_000])
    data = {
        "version": _CORPUS_VERSION,
        "python": sys.version.split()[0],
        "passages": [[p.title, p.source, p.text] for p in passages],
    }
    tmp = out.with_suffix(".tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(json.dumps(data))
    os.replace(tmp, out)
    return len(passages)


def python_docs_path(cache_dir: Path | None = None) -> Path:
    base = cache_dir or default_home() / "corpora"
    return base / f"python-docs-{sys.version_info.major}.{sys.version_info.minor}.json"


_build_lock = asyncio.Lock()


class PythonDocsProvider:
    """The built-in corpus: built on first use (a few seconds), then read from the cache."""

    name = PYTHON_DOCS

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.path = python_docs_path(cache_dir)

    async def ensure_built(self) -> Path:
        async with _build_lock:
            if not self.path.is_file():
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "conclave.tools.search",
                    "build-python-docs",
                    str(self.path),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env={**os.environ, "PYTHONWARNINGS": "ignore"},
                )
                _, err = await proc.communicate()
                if proc.returncode != 0 or not self.path.is_file():
                    raise ToolError(f"could not build the python-docs corpus: {err.decode(errors='replace')[-500:]}")
        return self.path

    def _index(self) -> BM25Index:
        stamp = self.path.stat().st_mtime

        def build() -> BM25Index:
            data = json.loads(self.path.read_text())
            return BM25Index(Passage(t, s, x) for t, s, x in data["passages"])

        return _cached_index(f"file:{self.path}", stamp, build)

    async def search(self, query: str, k: int) -> list[Hit]:
        await self.ensure_built()
        index = await asyncio.to_thread(self._index)
        return index.search(query, k)


# -- hosted providers ---------------------------------------------------------------------------


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


# -- the tool -----------------------------------------------------------------------------------


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
        return sorted({PYTHON_DOCS, *self.cfg.corpora})

    def provider(self, corpus: str | None) -> SearchProvider:
        cfg = self.cfg
        if corpus is None and cfg.provider != "local":
            assert cfg.api_key is not None
            key = cfg.api_key.get_secret_value()
            return BraveProvider(key, cfg.endpoint) if cfg.provider == "brave" else TavilyProvider(key, cfg.endpoint)
        name = corpus or cfg.default_corpus
        if name in cfg.corpora:
            return LocalCorpusProvider(cfg.corpora[name], name)
        if name == PYTHON_DOCS:
            return PythonDocsProvider(cfg.cache_dir)
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


def _main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "build-python-docs":
        n = build_python_docs(Path(argv[1]))
        sys.stdout.write(f"{n} passages\n")
        return 0
    sys.stderr.write("usage: python -m conclave.tools.search build-python-docs OUT.json\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
