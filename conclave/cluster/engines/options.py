"""The base of every engine's options: what ``options`` in a model's spec may say.

Options are validated by their engine's own model when ``conclave.toml`` is read (no model is
loaded), so a typo is an error naming ``options.<field>``; an engine is built from the validated
model or from the raw mapping alike (``EngineOptions.of``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EngineOptions", "GenerationOptions"]


class EngineOptions(BaseModel):
    """Options of one engine; unknown fields are rejected by name."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def of(cls, value: Self | Mapping[str, Any] | None) -> Self:
        """``value`` itself when already validated, else validated (``None`` = every default)."""
        return value if isinstance(value, cls) else cls.model_validate(value or {})


class GenerationOptions(EngineOptions):
    """Defaults of engines that generate in the replica (llama.cpp, vLLM) for what a request leaves out,
    and the bound on free strings that keeps constrained output from rambling (``constrained``)."""

    seed: int = Field(default=0, description="Seed when a request sets none (deterministic by default).")
    default_max_tokens: int = Field(default=256, ge=1, description="When a request sets no max_tokens.")
    max_string_length: int = Field(
        default=200, ge=1, description="maxLength given to free strings in tool arguments and JSON schemas."
    )
