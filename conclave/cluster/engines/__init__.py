"""Engine registry: name → (module, engine class, options class), imported lazily so that a CPU
machine never imports vLLM and a config check never loads a model."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from pydantic import BaseModel

if TYPE_CHECKING:
    from conclave.cluster.config import ModelSpec
    from conclave.cluster.engine import Engine

__all__ = ["build_engine", "options_model"]

_ENGINES: dict[str, tuple[str, str, str]] = {
    "sim": ("conclave.cluster.engines.sim", "SimEngine", "SimOptions"),
    "llamacpp": ("conclave.cluster.engines.llamacpp", "LlamaCppEngine", "LlamaCppOptions"),
    "openai_http": ("conclave.cluster.engines.openai_http", "OpenAIHttpEngine", "OpenAIHttpOptions"),
    # The vllm module imports vLLM only when an engine is built, so its options validate anywhere.
    "vllm": ("conclave.cluster.engines.vllm", "VllmEngine", "VllmOptions"),
}


def _load(engine: str) -> tuple[type, type[BaseModel]]:
    try:
        module, cls, opts = _ENGINES[engine]
    except KeyError:
        raise ValueError(f"unknown engine {engine!r}; known engines: {', '.join(sorted(_ENGINES))}") from None
    mod = importlib.import_module(module)
    return getattr(mod, cls), getattr(mod, opts)


def options_model(engine: str) -> type[BaseModel]:
    """The pydantic model that validates an engine's ``options``."""
    return _load(engine)[1]


def build_engine(spec: ModelSpec) -> Engine:
    """Construct the engine a model spec describes (loads the model; call inside the replica)."""
    cls, opts = _load(spec.engine)
    engine: Engine = cls(opts.model_validate(spec.options), name=spec.name)
    return engine
