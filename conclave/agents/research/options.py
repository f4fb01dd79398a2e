"""The ``research`` kind's options and the instructions its agents get."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from conclave.tools.search import PYTHON_DOCS

__all__ = ["LIBRARIAN_SYSTEM", "WRITER_SYSTEM", "ResearchOptions"]

LIBRARIAN_SYSTEM = (
    "You are the librarian of a research team. You gather evidence into a knowledge base of files "
    "that a writer will use. Search for sources (each result is saved under knowledge_base/sources/), "
    "read the useful ones, and append short evidence notes to the notes files in knowledge_base/, each "
    "note ending with the path of the source it comes from. Do not write the report. "
)
WRITER_SYSTEM = (
    "You write one section of a research report from the evidence you are given and the files of "
    "the workspace. Use only that evidence. Cite every claim with its source number in square brackets, "
    "like [2]. "
)


class ResearchOptions(BaseModel):
    """Options of the ``research`` kind (``TaskSpec.options``)."""

    model_config = ConfigDict(extra="forbid")

    corpus: str | None = Field(
        default=PYTHON_DOCS,
        max_length=100,
        description="Local corpus searched (python-docs, one in tools.search.corpora, or one added with "
        "`conclave corpus add`); "
        "null for the deployment's hosted search provider.",
    )
    rounds: int = Field(default=2, ge=1, le=20, description="Context-builder rounds (fresh librarian each).")
    key_questions: int = Field(default=3, ge=1, le=12, description="Key questions, the question included.")
    results_per_search: int = Field(default=3, ge=1, le=20, description="Sources per key question per round.")
    overview_entries: int = Field(
        default=12,
        ge=0,
        le=50,
        description="After a key question's seed search, archive an overview of the document (module) its best "
        "hit comes from, once per document and run: up to this many of its other API entries, signature and "
        "summary each; 0: none.",
    )
    build_share: float = Field(
        default=0.6, gt=0, lt=1, description="Share of every budget limit for stage 1 when the budget has no scopes."
    )
    max_sections: int = Field(default=4, ge=1, le=20, description="Sections of the report at most.")
    parallel_sections: int = Field(default=4, ge=1, le=32, description="Sections written at once.")
    max_tokens: int = Field(default=384, ge=16, le=100_000, description="Completion tokens per model call.")
    temperature: float | None = Field(default=None, ge=0, le=2)
    seed: int | None = None
    tool_choice: Literal["auto", "required"] = Field(
        default="required",
        description="'required': every agent turn is a tool call and agents end with final_answer, which "
        "small models need and large ones handle; 'auto' lets the model answer in plain text.",
    )
    min_tool_turns: int = Field(default=1, ge=0, le=100, description="With 'required': turns before final_answer.")
    builder_steps: int = Field(default=5, ge=1, le=200, description="Model turns of one librarian round.")
    writer_steps: int = Field(default=3, ge=1, le=200, description="Model turns of one section writer.")
    plan_with_model: bool = Field(default=True, description="Ask the model for key questions and section titles.")
    seed_searches: bool = Field(default=True, description="Search every key question each round, deterministically.")
    section_min_chars: int = Field(
        default=80, ge=1, le=10_000, description="Shorter model drafts are replaced by the section's evidence."
    )
    evidence_lines: int = Field(
        default=8, ge=1, le=50, description="Evidence sentences per section at most (the most relevant)."
    )
    budget_awareness: bool = True
    continue_from: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Dig deeper: start from this finished run's workspace and checklist.",
    )
    section_ensemble: str | dict[str, Any] | None = Field(
        default=None, description="Draft each section with this ensemble (name or config) instead of an agent."
    )
