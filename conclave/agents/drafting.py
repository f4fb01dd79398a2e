"""The contract between the research workflow and whatever drafts one of its sections (an ensemble).

It lives beside both, not in either: the research package hands a ``DraftRequest`` to an
``EnsembleDrafter`` (``conclave.agents.ensemble.draft_with_ensemble`` implements it), and the
ensemble package reads the request's type from here, so neither imports the other's internals and
the agents package has no import cycle (research → loop → ensemble → research before).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from conclave.core.context import Metered, RunContext

__all__ = ["DraftRequest", "EnsembleDrafter", "EvidenceItem"]


class EvidenceItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = Field(ge=1, description="The citation number to use.")
    path: str = Field(description="The archived source, under knowledge_base/sources/.")
    extract: str


class DraftRequest(BaseModel):
    """What an ensemble drafting a section is given."""

    model_config = ConfigDict(extra="forbid")

    ensemble: str | dict[str, Any]
    model: str = Field(description="The run's model, for ensembles whose members do not name one.")
    question: str
    title: str
    evidence: list[EvidenceItem]
    instructions: str
    max_tokens: int


class EnsembleDrafter(Protocol):
    """``conclave.agents.ensemble.draft_with_ensemble``: draft one section with an ensemble.

    It is called inside one durable step of the research run (so it must not open steps itself),
    must make every model call through ``meter`` (the section's scope, ``run/write/s{n}``), and
    returns the section's markdown body citing ``[n]`` numbers from ``request.evidence``. It may raise
    ``BudgetExhausted`` or ``EngineError``; the section is then written from its evidence.
    """

    def __call__(self, ctx: RunContext, request: DraftRequest, *, meter: Metered) -> Awaitable[str]: ...
