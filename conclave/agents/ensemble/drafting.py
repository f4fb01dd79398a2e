"""Ensembles as the answer-critical step of the research workflow: draft one report section.

The research kind calls this inside one durable step, with the section's meter; every inner call
goes through that meter, so the section's sub-budget bounds the ensemble like it bounds an agent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conclave.core.context import Metered
from conclave.schema.chat import ChatMessage, ChatRequest

from ..drafting import DraftRequest
from .serving import ensemble_chat

if TYPE_CHECKING:
    from conclave.core.context import RunContext

__all__ = ["draft_with_ensemble", "section_prompt"]


def section_prompt(request: DraftRequest) -> list[ChatMessage]:
    evidence = "\n".join(f"[{e.n}] {e.extract.strip()} (source: {e.path})" for e in request.evidence)
    user = (
        f"Research question: {request.question}\n"
        f"Section to write: {request.title}\n\n"
        f"Evidence (cite it with its number in brackets, e.g. [1]):\n{evidence or '(none)'}\n\n"
        "Write the body of this section in markdown, citing the evidence you use."
    )
    return [ChatMessage(role="system", content=request.instructions), ChatMessage(role="user", content=user)]


async def draft_with_ensemble(ctx: RunContext, request: DraftRequest, *, meter: Metered) -> str:
    """The ensemble's final answer for one section (``[n]`` citations from ``request.evidence``)."""
    chat = ChatRequest(model=request.model, messages=section_prompt(request), max_tokens=request.max_tokens)
    extra_dirs = []
    settings_dir = getattr(getattr(ctx, "settings", None), "ensembles_dir", None)
    if settings_dir:
        extra_dirs.append(settings_dir)
    response = await ensemble_chat(request.ensemble, chat, meter, extra_dirs=extra_dirs, default_model=request.model)
    return response.choices[0].message.content or ""
