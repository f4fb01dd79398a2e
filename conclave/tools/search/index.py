"""Hybrid ranking: BM25 (``bm25s``) fused with dense embeddings, diversified by MMR.

Why both. BM25 finds the passage that names the API a question names (``lru_cache``,
``ensure_ascii``); embeddings find the passage that explains the idea in other words ("runs a
coroutine concurrently" for "differ from threads"). Each ranks the corpus; reciprocal-rank fusion
(RRF, k=60) adds ``1 / (60 + rank)`` from each list, which needs no score calibration between
the two. Then maximal marginal relevance picks the results one at a time, trading relevance
against similarity to what is already picked, so a query does not get five near-copies of one
paragraph (pydoc repeats a docstring for every alias).

Vectors are computed once per passage text and cached on disk (``VectorCache``, keyed by the
text's hash and the model id), so a corpus is embedded once and a folder that changes only embeds
its new passages. Without an embedder (the ``cpu`` extra not installed) the index is BM25 only and
MMR uses word overlap.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import bm25s
import numpy as np

from .embed import DIM, Embedder, Vectors, text_key
from .text import Hit, Passage, entry_of, in_document, snippet, terms, tokenize

__all__ = ["RRF_K", "HybridIndex", "VectorCache", "mmr", "passage_text"]

RRF_K = 60
_CANDIDATES = 60
#: A passage whose cosine to the query is below this is not a dense match (unrelated texts score ~0-0.1).
MIN_DENSE = 0.2


def passage_text(p: Passage) -> str:
    """What is indexed and embedded for a passage: its title, then its text."""
    return f"{p.title}\n{p.text}"


class VectorCache:
    """Passage vectors on disk: ``keys.json`` (text hashes) and ``vectors.npy`` in one folder per
    model. Thread-safe; ``save`` writes atomically."""

    def __init__(self, folder: Path, model_id: str) -> None:
        self.folder = folder / model_id
        self._lock = threading.Lock()
        self._rows: dict[str, int] = {}
        self._vectors: Vectors = np.zeros((0, DIM), dtype=np.float32)
        keys_file, vec_file = self.folder / "keys.json", self.folder / "vectors.npy"
        if keys_file.is_file() and vec_file.is_file():
            try:
                keys = json.loads(keys_file.read_text())
                vectors = np.load(vec_file)
                if len(keys) == len(vectors) and vectors.shape[1:] == (DIM,):
                    self._rows = {k: i for i, k in enumerate(keys)}
                    self._vectors = vectors.astype(np.float32)
            except (ValueError, OSError):
                pass  # a damaged cache is rebuilt

    def __len__(self) -> int:
        return len(self._rows)

    def vectors(
        self, texts: Sequence[str], embed: Callable[[Sequence[str]], Vectors], *, prune: bool = False
    ) -> Vectors:
        """Vectors for ``texts``: cached rows, and ``embed`` for the rest (then saved). With
        ``prune``, ``texts`` is the whole corpus and rows of texts no longer in it are dropped."""
        keys = [text_key(t) for t in texts]
        with self._lock:
            missing = [i for i, k in enumerate(keys) if k not in self._rows]
            stale = prune and len(self._rows) > len(set(keys))
        fresh = embed([texts[i] for i in missing]) if missing else np.zeros((0, DIM), np.float32)
        with self._lock:
            known = {k: self._vectors[r] for k, r in self._rows.items()}
            for i, row in zip(missing, fresh, strict=True):
                known.setdefault(keys[i], row)
            if missing or stale:
                order = list(dict.fromkeys(keys)) if prune else list(known)
                self._vectors = np.stack([known[k] for k in order]) if order else np.zeros((0, DIM), np.float32)
                self._rows = {k: i for i, k in enumerate(order)}
                self._save()
            if not keys:
                return np.zeros((0, DIM), np.float32)
            return self._vectors[[self._rows[k] for k in keys]]

    def _save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        keys = sorted(self._rows, key=self._rows.__getitem__)
        tmp_v = self.folder / f"vectors.{os.getpid()}.tmp.npy"
        tmp_k = self.folder / f"keys.{os.getpid()}.tmp"
        np.save(tmp_v, self._vectors)
        tmp_k.write_text(json.dumps(keys))
        os.replace(tmp_v, self.folder / "vectors.npy")
        os.replace(tmp_k, self.folder / "keys.json")


def mmr(relevance: Sequence[float], similarity: Callable[[int, int], float], k: int, lam: float = 0.7) -> list[int]:
    """Maximal marginal relevance: indices into ``relevance``, each next one maximising
    ``lam * relevance - (1 - lam) * max similarity to those already chosen``."""
    chosen: list[int] = []
    left = list(range(len(relevance)))
    while left and len(chosen) < k:
        best = max(
            left,
            key=lambda i: (lam * relevance[i] - (1 - lam) * max((similarity(i, j) for j in chosen), default=0.0), -i),
        )
        chosen.append(best)
        left.remove(best)
    return chosen


class HybridIndex:
    """BM25 plus (when an embedder is given) dense vectors over a list of passages."""

    def __init__(
        self,
        passages: Iterable[Passage],
        embedder: Embedder | None = None,
        cache: VectorCache | None = None,
    ) -> None:
        self.passages = list(passages)
        self._entries: dict[str, frozenset[str]] = {}
        self.embedder = embedder
        tokens = [tokenize(passage_text(p)) for p in self.passages]
        self._terms = [set(t) for t in tokens]
        self.bm25 = bm25s.BM25()
        self.bm25.index([t or ["\x00"] for t in tokens], show_progress=False)
        self._vocab = set(self.bm25.vocab_dict)
        self.vectors: Vectors | None = None
        if embedder is not None and self.passages:
            texts = [passage_text(p) for p in self.passages]
            self.vectors = (
                cache.vectors(texts, embedder.embed, prune=True) if cache is not None else embedder.embed(texts)
            )

    def __len__(self) -> int:
        return len(self.passages)

    def bm25_scores(self, query: str) -> np.ndarray:
        q = [t for t in tokenize(query) if t in self._vocab]
        if not q or not self.passages:
            return np.zeros(len(self.passages), dtype=np.float32)
        return np.asarray(self.bm25.get_scores(q), dtype=np.float32)

    def dense_scores(self, query: str) -> np.ndarray | None:
        if self.vectors is None or self.embedder is None:
            return None
        return np.asarray(self.vectors @ self.embedder.embed_one(query), dtype=np.float32)

    def entries(self, document: str) -> frozenset[str]:
        """The entries (``text.entry_of``) of ``document``'s passages: one for a file or a short page,
        a module's API entries for a module. Kept per document (an index does not change once built;
        a research run asks once per seed search)."""
        got = self._entries.get(document)
        if got is None:
            got = frozenset(entry_of(p.source) for p in self.passages if in_document(p.source, document))
            self._entries[document] = got
        return got

    def in_document(self, document: str) -> np.ndarray:
        """A mask of the passages of ``document`` (``text.document_of``: a module's entries, a page's
        sections, a file's parts)."""
        return np.fromiter((in_document(p.source, document) for p in self.passages), dtype=bool, count=len(self))

    def search(
        self, query: str, k: int = 5, *, lam: float = 0.7, diversify: bool = True, within: str | None = None
    ) -> list[Hit]:
        """The ``k`` best passages for ``query``: RRF of the BM25 and dense rankings, then MMR.
        With ``within``, only the passages of that document are ranked (BM25's and the dense
        scores of the others are cleared), so a search can dig into the module its best hits
        came from and find the entries that the whole corpus's ranking left below the cut."""
        if not self.passages or k <= 0:
            return []
        lexical = self.bm25_scores(query)
        dense = self.dense_scores(query)
        if within is not None:
            keep = self.in_document(within)
            lexical = np.where(keep, lexical, 0.0).astype(np.float32)
            if dense is not None:
                dense = np.where(keep, dense, -1.0).astype(np.float32)
        pool = min(len(self.passages), max(_CANDIDATES, 4 * k))
        fused: dict[int, float] = {}
        ranked_lists = [np.argsort(-lexical, kind="stable")[:pool]]
        ranked_lists[0] = ranked_lists[0][lexical[ranked_lists[0]] > 0]  # BM25 ranks only matching passages
        if dense is not None:
            by_dense = np.argsort(-dense, kind="stable")[:pool]
            ranked_lists.append(by_dense[dense[by_dense] >= MIN_DENSE])
        for ranking in ranked_lists:
            for rank, i in enumerate(ranking):
                fused[int(i)] = fused.get(int(i), 0.0) + 1.0 / (RRF_K + rank + 1)
        if not fused:
            return []
        cands = sorted(fused, key=lambda i: (-fused[i], i))[:pool]
        top = fused[cands[0]]
        rel = [fused[i] / top for i in cands]
        if diversify:
            if self.vectors is not None:
                sub = self.vectors[cands]
                sims = sub @ sub.T
                order = mmr(rel, lambda a, b: float(sims[a, b]), k, lam)
            else:
                sets = [self._terms[i] for i in cands]
                order = mmr(rel, lambda a, b: _jaccard(sets[a], sets[b]), k, lam)
        else:
            order = list(range(min(k, len(cands))))
        want = terms(query)
        out = []
        for j in order:
            p = self.passages[cands[j]]
            out.append(Hit(p.title, p.source, p.text, round(fused[cands[j]], 6), snippet(p.text, want)))
        return out


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0
