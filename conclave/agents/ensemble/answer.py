"""An ensemble as an agent's answering step.

The agent loop gathers evidence with tools; its final answer can then come from an ensemble instead
of one model call: ``await answer_with_ensemble("moa-lite-local", messages, meter)``. An ensemble
does not call tools and its judges read plain text, so the agent's conversation is flattened first:
an assistant turn's tool calls become a line of text (``[called lookup({"q": "x"})]``), a tool
result becomes a user message (``[result of lookup]: ...``), and, unless the conversation already
ends with the user's message, ``final_prompt`` is appended as the last user message. System messages
pass on unchanged. Everything else is ``ensemble_chat``: every inner call goes through ``meter``;
when the budget stops the ensemble after a complete layer, that layer's best candidate is the
answer; with no complete layer, ``BudgetExhausted`` propagates for the loop to handle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from conclave.core.context import Metered
from conclave.schema.chat import ChatMessage, ChatRequest

from .config import EnsembleConfig
from .serving import ensemble_chat

__all__ = ["FINAL_PROMPT", "answer_with_ensemble", "flatten_for_ensemble"]

FINAL_PROMPT = "Give your final answer to the task above, using what the tool results showed."


def flatten_for_ensemble(messages: Sequence[ChatMessage], final_prompt: str = FINAL_PROMPT) -> list[ChatMessage]:
    """The conversation as plain text turns ending with a user message (see the module)."""
    names: dict[str, str] = {}
    out: list[ChatMessage] = []
    for m in messages:
        if m.role == "assistant":
            parts = [m.text()] if m.text() else []
            for tc in m.tool_calls or []:
                names[tc.id] = tc.function.name
                parts.append(f"[called {tc.function.name}({tc.function.arguments})]")
            if parts:
                out.append(ChatMessage(role="assistant", content="\n".join(parts)))
        elif m.role == "tool":
            name = m.name or names.get(m.tool_call_id or "", "a tool")
            out.append(ChatMessage(role="user", content=f"[result of {name}]: {m.text()}"))
        else:
            out.append(ChatMessage(role=m.role, content=m.text()))
    if not out or out[-1].role != "user" or out[-1].text().startswith("[result of "):
        out.append(ChatMessage(role="user", content=final_prompt))
    return out


async def answer_with_ensemble(
    name_or_config: str | dict[str, Any] | EnsembleConfig,
    messages: Sequence[ChatMessage],
    meter: Metered,
    *,
    extra_dirs: Iterable[str | Path | None] = (),
    default_model: str | None = None,
    model_map: Mapping[str, str] | None = None,
    max_tokens: int | None = None,
    seed: int = 0,
    final_prompt: str = FINAL_PROMPT,
) -> str:
    """The ensemble's final answer to the agent's conversation (see the module). ``name_or_config``:
    a name (``ensemble/`` prefix allowed), an inline config dict or an ``EnsembleConfig``;
    ``default_model`` serves model names the ensemble's map leaves out; ``max_tokens`` caps every
    inner call; ``seed`` seeds the samples (use a fixed one for a reproducible answer)."""
    request = ChatRequest(messages=flatten_for_ensemble(messages, final_prompt), max_tokens=max_tokens, seed=seed)
    response = await ensemble_chat(
        name_or_config, request, meter, extra_dirs=extra_dirs, model_map=model_map, default_model=default_model
    )
    return response.choices[0].message.content or ""
