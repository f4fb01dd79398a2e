"""Engines: llama.cpp (the CPU default), vLLM, any OpenAI-compatible HTTP server, and ``sim``.

``registry`` maps an engine name to its class and options model; ``options`` holds the options'
base; ``constrained`` the structured-output helpers the local engines share.
"""

from .registry import ENGINE_NAMES, EngineName, EngineSpec, build_engine, options_model

__all__ = ["ENGINE_NAMES", "EngineName", "EngineSpec", "build_engine", "options_model"]
