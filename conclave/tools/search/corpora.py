"""Local corpora: folders of documents, the built-in ``python-docs``, and ``conclave corpus add``.

``python-docs`` is Python's own documentation. Where the full HTML documentation is installed
(Debian's ``python3-doc``, at ``/usr/share/doc/python3/html``, or the folder in
``tools.search.python_docs_html``) it indexes the library reference, the language reference, the
HOWTOs, the tutorial and the FAQ (``sphinx.py``). Otherwise it falls back to what ships with every
Python: the language-reference topics of ``pydoc_data.topics`` and the docstrings of the
standard-library modules and their public submodules (``urllib.parse``, ``concurrent.futures``), one
entry per documented function, class and method (read with
``inspect``, so no pydoc headers, class trees or "It may be incomplete" notes). The corpus is
built once, in a separate process (importing every stdlib module must not touch the worker; the
embeddings take a while and must not hold the event loop), and cached under
``$CONCLAVE_HOME/corpora`` with its vectors.

A folder corpus (``tools.search.corpora`` in the settings, or one added with ``conclave corpus
add NAME PATH``, which records it in ``$CONCLAVE_HOME/corpora/registry.json``) is read on first use
and re-read when its files change; its vectors are cached per passage, so only new text is
embedded again.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from conclave.core.paths import default_home

from .._text import html_to_text
from ..base import ToolError
from ..settings import SearchSettings
from .embed import embedder
from .index import HybridIndex, VectorCache
from .sphinx import html_doc_passages
from .text import Hit, Passage, is_boilerplate, split_passages

__all__ = [
    "PYTHON_DOCS",
    "CorpusInfo",
    "LocalCorpusProvider",
    "PythonDocsProvider",
    "add_corpus",
    "build_python_docs",
    "cache_dir",
    "known_corpora",
    "python_docs_html",
    "python_docs_path",
    "read_folder",
    "registered_corpora",
]

PYTHON_DOCS = "python-docs"
_CORPUS_VERSION = 3
_EXTS = {".txt", ".md", ".markdown", ".rst", ".html", ".htm"}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def cache_dir(settings: SearchSettings | None = None) -> Path:
    """Where built corpora, their vectors and the corpus registry live."""
    if settings is not None and settings.cache_dir is not None:
        return settings.cache_dir
    return default_home() / "corpora"


# -- folders ---------------------------------------------------------------------------------------


def read_folder(folder: Path) -> list[Passage]:
    """Passages of every ``.txt``, ``.md``, ``.rst`` and ``.html`` file under ``folder`` (symlinks
    are not followed); boilerplate passages are left out."""
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
        out += [p for p in split_passages(title or rel, rel, text) if not is_boilerplate(p.text)]
    return out


def _folder_stamp(folder: Path) -> tuple[int, float, int]:
    n, latest, size = 0, 0.0, 0
    for path in folder.rglob("*"):
        if path.suffix.lower() in _EXTS and path.is_file():
            st = path.stat()
            n += 1
            latest = max(latest, st.st_mtime)
            size += st.st_size
    return n, latest, size


_indexes: dict[str, tuple[object, HybridIndex]] = {}
_index_lock = threading.Lock()


def _cached_index(key: str, stamp: object, build: Callable[[], HybridIndex]) -> HybridIndex:
    with _index_lock:
        got = _indexes.get(key)
        if got is not None and got[0] == stamp:
            return got[1]
    index = build()
    with _index_lock:
        _indexes[key] = (stamp, index)
    return index


class LocalCorpusProvider:
    """Hybrid search over a folder of text files."""

    def __init__(self, folder: Path | str, name: str | None = None, cache: Path | None = None) -> None:
        self.folder = Path(folder)
        self.name = name or self.folder.name
        self.cache = cache

    def index(self) -> HybridIndex:
        if not self.folder.is_dir():
            raise ToolError(f"corpus {self.name!r}: folder {self.folder} does not exist")
        stamp = _folder_stamp(self.folder)
        vectors = None
        if self.cache is not None:
            key = hashlib.sha256(str(self.folder.resolve()).encode()).hexdigest()[:16]
            vectors = VectorCache(self.cache / "vectors" / f"dir-{key}", embedder_id())

        def build() -> HybridIndex:
            return HybridIndex(read_folder(self.folder), embedder(), vectors)

        return _cached_index(f"dir:{self.folder.resolve()}", stamp, build)

    async def search(self, query: str, k: int, *, within: str | None = None) -> list[Hit]:
        index = await asyncio.to_thread(self.index)
        return await asyncio.to_thread(functools.partial(index.search, query, k, within=within))


def embedder_id() -> str:
    e = embedder()
    return e.model_id if e is not None else "none"


# -- the corpus registry (conclave corpus add) ------------------------------------------------------


class CorpusInfo(BaseModel):
    """What ``conclave corpus add`` reports."""

    model_config = ConfigDict(extra="forbid")

    name: str
    path: str
    passages: int = Field(ge=0)
    embedded: bool = Field(description="Whether dense vectors were computed (the cpu extra is installed).")
    seconds: float


def _registry_file(base: Path) -> Path:
    return base / "registry.json"


def registered_corpora(base: Path) -> dict[str, Path]:
    """Corpora added with ``conclave corpus add``: name → folder."""
    f = _registry_file(base)
    if not f.is_file():
        return {}
    try:
        data = json.loads(f.read_text())
    except ValueError:
        return {}
    return {str(k): Path(v) for k, v in data.items()} if isinstance(data, dict) else {}


def known_corpora(settings: SearchSettings) -> dict[str, Path]:
    """Every named folder corpus: the registry's, then the settings' (which win)."""
    return {**registered_corpora(cache_dir(settings)), **settings.corpora}


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def add_corpus(name: str, folder: Path, settings: SearchSettings) -> CorpusInfo:
    """Index ``folder`` as corpus ``name`` (passages and vectors now, so the first search is fast)
    and record it in the registry. Raises ``ValueError`` for a bad name or folder."""
    if not _NAME.match(name):
        raise ValueError(f"corpus name {name!r}: use lower-case letters, digits, '.', '_' or '-' (64 at most)")
    if name == PYTHON_DOCS:
        raise ValueError(f"{PYTHON_DOCS!r} is the built-in corpus; choose another name")
    folder = folder.expanduser().resolve()
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    t0 = time.perf_counter()
    base = cache_dir(settings)
    index = LocalCorpusProvider(folder, name, base).index()
    if not len(index):
        raise ValueError(f"{folder} has no .txt, .md, .rst or .html file with text to index")
    with _file_lock(base / "registry.lock"):
        reg = {k: str(v) for k, v in registered_corpora(base).items()}
        reg[name] = str(folder)
        tmp = _registry_file(base).with_suffix(".tmp")
        tmp.write_text(json.dumps(reg, indent=2, sort_keys=True))
        os.replace(tmp, _registry_file(base))
    return CorpusInfo(
        name=name,
        path=str(folder),
        passages=len(index),
        embedded=index.vectors is not None,
        seconds=round(time.perf_counter() - t0, 2),
    )


# -- python-docs -----------------------------------------------------------------------------------

_DENY = frozenset(
    "antigravity this idlelib tkinter turtle turtledemo lib2to3 ensurepip pydoc_data test msilib winreg "
    "winsound nt xxsubtype xxlimited ossaudiodev sre_compile sre_parse sre_constants nis spwd crypt msvcrt "
    "pty tty curses readline sitecustomize usercustomize distutils imp asynchat asyncore smtpd".split()
)
#: Docstrings every class inherits (``__init__``'s "Initialize self."): not documentation of the class.
_GENERIC = {n: getattr(getattr(base, n, None), "__doc__", None) for base in (type, object) for n in vars(base)}


def python_docs_html(settings: SearchSettings) -> Path | None:
    """The HTML documentation folder ``python-docs`` indexes, or None for the pydoc fallback."""
    if settings.python_docs == "pydoc":
        return None
    root = settings.python_docs_html
    found = (root / "library" / "index.html").is_file()
    if settings.python_docs == "html" and not found:
        raise ToolError(f"tools.search.python_docs is 'html' but {root} has no library/index.html")
    return root if found else None


def python_docs_path(base: Path | None = None, html: Path | None = None) -> Path:
    """The built corpus file (passages as JSON) for this Python and documentation source."""
    base = base or default_home() / "corpora"
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    if html is None:
        return base / f"python-docs-{ver}-v{_CORPUS_VERSION}.json"
    stamp = (html / "library" / "index.html").stat().st_mtime_ns
    tag = re.sub(r"[^a-z0-9]+", "-", str(html).lower()).strip("-")[-40:]
    return base / f"python-docs-{ver}-v{_CORPUS_VERSION}-html-{tag}-{stamp}.json"


def _signature(obj: Any) -> str:
    import inspect

    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return ""
    return re.sub(r" at 0x[0-9a-f]+", "", sig)  # a default's repr with its address says nothing


def _own_doc(cls: type, name: str, member: Any) -> str | None:
    doc = getattr(member, "__doc__", None)
    if not isinstance(doc, str) or not doc.strip():
        return None
    if name.startswith("__") and doc == _GENERIC.get(name):
        return None
    if name.startswith("_") and not name.startswith("__"):
        return None
    return doc


def _api_entries(module: Any, seen: set[int]) -> list[tuple[str, str, str]]:
    """(title, source, text) of a module's documented public functions and classes; a class's
    own documented methods and properties are paragraphs of its entry."""
    import inspect

    name = module.__name__
    public = getattr(module, "__all__", None)
    out: list[tuple[str, str, str]] = []
    for attr, obj in sorted(vars(module).items()):
        if attr.startswith("_") or id(obj) in seen:
            continue
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        home = getattr(obj, "__module__", "") or ""
        if not (home == name or home.startswith(name + ".") or home.lstrip("_") == name or (public and attr in public)):
            continue
        doc = inspect.getdoc(obj)
        if not doc:
            continue
        seen.add(id(obj))
        qual = f"{name}.{attr}"
        paras = [f"{qual}{_signature(obj)}\n{doc}"]
        if inspect.isclass(obj):
            for mname, member in sorted(vars(obj).items()):
                mdoc = _own_doc(obj, mname, member)
                if mdoc is None:
                    continue
                target = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
                sig = _signature(target) if callable(target) else ""
                paras.append(f"{qual}.{mname}{sig}\n{inspect.cleandoc(mdoc)}")
        kind = "class" if inspect.isclass(obj) else "function"
        out.append((f"{qual} ({kind} in module {name})", f"{PYTHON_DOCS}/module/{qual}", "\n\n".join(paras)))
    return out


#: Packages whose submodules are not documentation (one codec per module).
_NO_WALK = frozenset({"encodings"})
#: Submodule name parts that mark tests, not the library.
_TEST_PARTS = frozenset({"test", "tests", "idle_test"})


def _import_quietly(name: str) -> Any | None:
    import importlib
    import io

    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return importlib.import_module(name)
    except BaseException:  # noqa: BLE001 - a module that cannot be imported here is left out
        return None


def _stdlib_modules() -> Iterator[Any]:
    """Every importable public standard-library module: the top-level ones of
    ``sys.stdlib_module_names`` and, for a package, its public submodules (``urllib.parse``,
    ``concurrent.futures``, ``logging.handlers``, ``xml.etree.ElementTree``…), which a top-level
    import does not load and which hold much of the library's documentation."""
    import pkgutil

    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in _DENY:
            continue
        module = _import_quietly(name)
        if module is None:
            continue
        yield module
        path = getattr(module, "__path__", None)
        if path is None or name in _NO_WALK:
            continue
        subs = sorted(info.name for info in pkgutil.walk_packages(path, prefix=name + ".", onerror=lambda _: None))
        for sub in subs:
            parts = sub.split(".")[1:]
            if any(p.startswith("_") or p in _TEST_PARTS or p in _DENY for p in parts):
                continue
            if (submodule := _import_quietly(sub)) is not None:
                yield submodule


def _pydoc_passages() -> list[Passage]:
    import inspect
    import warnings
    from pydoc_data.topics import topics

    warnings.simplefilter("ignore")
    passages: list[Passage] = []
    for name in sorted(topics):
        text = topics[name]
        head = re.match(r"\s*([^\n]{3,100})\n([*=~^-])\2{2,}\n", text)  # the topic's own heading
        title = f"{head.group(1).strip()} (Python language reference)" if head else f"Python language reference: {name}"
        passages += split_passages(title, f"{PYTHON_DOCS}/topic/{name}", text[head.end() :] if head else text)
    seen: set[int] = set()
    for module in _stdlib_modules():
        name = module.__name__
        doc = inspect.getdoc(module)
        if doc:
            passages += split_passages(f"{name} (module)", f"{PYTHON_DOCS}/module/{name}", doc)
        for title, source, text in _api_entries(module, seen):
            passages += split_passages(title, source, text)
    return [p for p in passages if not is_boilerplate(p.text)]


def build_python_docs(out: Path, html: Path | None = None, vectors: Path | None = None) -> int:
    """Write the python-docs corpus to ``out`` (JSON) and, when an embedder is installed, its
    vectors to the cache in ``vectors``; returns the number of passages. Imports standard-library
    modules (the pydoc fallback), so run it in its own process (``python -m conclave.tools.search``)."""
    with _file_lock(out.with_suffix(".lock")):
        if out.is_file():  # another process built it while this one waited
            return len(json.loads(out.read_text())["passages"])
        passages = html_doc_passages(html) if html is not None else _pydoc_passages()
        if vectors is not None and (e := embedder()) is not None:
            HybridIndex(passages, e, VectorCache(vectors, e.model_id))
        source: Literal["html", "pydoc"] = "html" if html is not None else "pydoc"
        data = {
            "version": _CORPUS_VERSION,
            "python": sys.version.split()[0],
            "source": source,
            "root": str(html) if html is not None else None,
            "passages": [[p.title, p.source, p.text] for p in passages],
        }
        tmp = out.with_suffix(".tmp")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data))
        os.replace(tmp, out)
        return len(passages)


_build_lock = asyncio.Lock()


class PythonDocsProvider:
    """The built-in corpus: built on first use (in a subprocess), then read from the cache."""

    name = PYTHON_DOCS

    def __init__(self, settings: SearchSettings | None = None) -> None:
        self.settings = settings or SearchSettings()
        self.base = cache_dir(self.settings)
        self.html = python_docs_html(self.settings)
        self.path = python_docs_path(self.base, self.html)
        self.vectors_dir = self.base / "vectors" / self.path.stem

    async def ensure_built(self) -> Path:
        async with _build_lock:
            if not self.path.is_file():
                args = ["build-python-docs", str(self.path), "--vectors", str(self.vectors_dir)]
                if self.html is not None:
                    args += ["--html", str(self.html)]
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "conclave.tools.search",
                    *args,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env={**os.environ, "PYTHONWARNINGS": "ignore"},
                )
                _, err = await proc.communicate()
                if proc.returncode != 0 or not self.path.is_file():
                    raise ToolError(f"could not build the python-docs corpus: {err.decode(errors='replace')[-500:]}")
        return self.path

    def index(self) -> HybridIndex:
        stamp = self.path.stat().st_mtime_ns

        def build() -> HybridIndex:
            data = json.loads(self.path.read_text())
            e = embedder()
            cache = VectorCache(self.vectors_dir, e.model_id) if e is not None else None
            return HybridIndex((Passage(t, s, x) for t, s, x in data["passages"]), e, cache)

        return _cached_index(f"file:{self.path}", stamp, build)

    async def search(self, query: str, k: int, *, within: str | None = None) -> list[Hit]:
        await self.ensure_built()
        index = await asyncio.to_thread(self.index)
        return await asyncio.to_thread(functools.partial(index.search, query, k, within=within))
