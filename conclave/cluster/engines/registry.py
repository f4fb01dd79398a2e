"""Engine registry: engine name → the engine class and its options model.

``cluster.config`` validates a model's ``options`` with the registry's options model, and a replica
builds its engine through ``build_engine``; the engine modules know neither (they import only the
``Engine`` contract and their options base), so there is no cycle between the spec and the engines.
Importing an engine module is cheap: the heavy libraries (llama-cpp-python, vLLM) are imported only
when an engine is built, so a CPU machine validates a vLLM model's options without vLLM.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol, get_args

from conclave.cluster.engine import Engine

from .llamacpp import LlamaCppEngine, LlamaCppOptions
from .openai_http import OpenAIHttpEngine, OpenAIHttpOptions
from .options import EngineOptions
from .sim import SimEngine, SimOptions
from .vllm import VllmEngine, VllmOptions

__all__ = ["ENGINE_NAMES", "EngineName", "EngineSpec", "build_engine", "options_model"]

EngineName = Literal["llamacpp", "openai_http", "vllm", "sim"]
"""The engines a model may be served by."""

ENGINE_NAMES: tuple[str, ...] = get_args(EngineName)


class EngineSpec(Protocol):
    """What building an engine needs from a model's spec (``cluster.config.ModelSpec`` has it)."""

    @property
    def name(self) -> str: ...

    @property
    def engine(self) -> str: ...

    @property
    def options(self) -> Mapping[str, Any]: ...


_ENGINES: dict[str, tuple[Callable[..., Engine], type[EngineOptions]]] = {
    "sim": (SimEngine, SimOptions),
    "llamacpp": (LlamaCppEngine, LlamaCppOptions),
    "openai_http": (OpenAIHttpEngine, OpenAIHttpOptions),
    "vllm": (VllmEngine, VllmOptions),
}


def _entry(engine: str) -> tuple[Callable[..., Engine], type[EngineOptions]]:
    try:
        return _ENGINES[engine]
    except KeyError:
        raise ValueError(f"unknown engine {engine!r}; known engines: {', '.join(sorted(_ENGINES))}") from None


def options_model(engine: str) -> type[EngineOptions]:
    """The pydantic model that validates an engine's ``options``."""
    return _entry(engine)[1]


def build_engine(spec: EngineSpec) -> Engine:
    """Construct the engine a model spec describes (loads the model; call inside the replica)."""
    cls, opts = _entry(spec.engine)
    return cls(opts.model_validate(spec.options), name=spec.name)
