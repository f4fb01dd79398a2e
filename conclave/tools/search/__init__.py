"""``search``: hybrid retrieval (BM25 fused with dense embeddings, MMR) over local corpora — the
built-in ``python-docs`` and any folder — and hosted HTTP providers.

- ``text``: the one tokenizer and stop list, passages, sentences, boilerplate.
- ``embed``: the offline sentence-embedding model (ONNX, the ``cpu`` extra).
- ``index``: ``HybridIndex`` (bm25s + vectors, reciprocal-rank fusion, MMR, search within a document)
  and the vector cache.
- ``overview``: one passage listing a document's API entries (signature and summary each).
- ``sphinx``: passages from Python's HTML documentation.
- ``corpora``: folder corpora, ``python-docs``, the registry of ``conclave corpus add``.
- ``hosted``: Brave and Tavily.
- ``tool``: the ``search`` tool itself.
"""

from .corpora import (
    PYTHON_DOCS,
    CorpusInfo,
    LocalCorpusProvider,
    PythonDocsProvider,
    add_corpus,
    build_python_docs,
    known_corpora,
    python_docs_path,
    read_folder,
)
from .embed import Embedder, embedder
from .hosted import BraveProvider, TavilyProvider
from .index import HybridIndex, VectorCache, mmr
from .overview import entry_summary, overview
from .text import (
    Hit,
    Passage,
    document_of,
    entry_of,
    in_document,
    is_boilerplate,
    prose_sentences,
    sentences,
    split_passages,
    terms,
    tokenize,
)
from .tool import SearchArgs, SearchProvider, SearchTool

__all__ = [
    "PYTHON_DOCS",
    "BraveProvider",
    "CorpusInfo",
    "Embedder",
    "Hit",
    "HybridIndex",
    "LocalCorpusProvider",
    "Passage",
    "PythonDocsProvider",
    "SearchArgs",
    "SearchProvider",
    "SearchTool",
    "TavilyProvider",
    "VectorCache",
    "add_corpus",
    "build_python_docs",
    "document_of",
    "embedder",
    "entry_of",
    "entry_summary",
    "in_document",
    "is_boilerplate",
    "known_corpora",
    "mmr",
    "overview",
    "prose_sentences",
    "python_docs_path",
    "read_folder",
    "sentences",
    "split_passages",
    "terms",
    "tokenize",
]
