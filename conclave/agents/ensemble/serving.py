"""An ensemble answering as a model: what ``model="ensemble/<name>"`` on the OpenAI endpoint runs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from conclave.core.context import Metered
from conclave.schema.chat import AssistantMessage, ChatChoice, ChatRequest, ChatResponse, CompletionUsage

from .config import EnsembleConfig
from .executor import EnsembleError, Executor, ModelResolver
from .library import resolve_ensemble

__all__ = ["ensemble_chat"]


async def ensemble_chat(
    name_or_config: str | dict[str, Any] | EnsembleConfig,
    request: ChatRequest,
    meter: Metered,
    *,
    extra_dirs: Iterable[str | Path | None] = (),
    model_map: Mapping[str, str] | None = None,
    default_model: str | None = None,
    max_parse_retries: int = 2,
) -> ChatResponse:
    """Run an ensemble on a chat request and answer like a model.

    The request's ``max_tokens`` caps every inner call, its ``seed`` seeds the ensemble. ``usage`` is
    the sum over all inner calls. When the budget stops the ensemble after at least one complete
    layer, the answer is that layer's best candidate with ``finish_reason="length"``; with no
    complete layer, ``BudgetExhausted`` propagates. Tools and ``n`` > 1 are refused: an ensemble
    returns one text answer.
    """
    if request.tools:
        raise EnsembleError("ensembles do not call tools; send the request without tools")
    if request.n != 1:
        raise EnsembleError("an ensemble returns one answer; n must be 1")
    config = resolve_ensemble(
        name_or_config.removeprefix("ensemble/") if isinstance(name_or_config, str) else name_or_config, extra_dirs
    )
    resolver = ModelResolver(
        served=meter.router.models(),
        model_map={**config.model_map, **(model_map or {})},
        default_model=config.default_model or default_model,
    )
    result = await Executor(
        config,
        request.messages,
        meter,
        resolver=resolver,
        seed=request.seed or 0,
        max_parse_retries=max_parse_retries,
        max_tokens_cap=request.token_limit,
    ).run()
    u = result.usage
    return ChatResponse(
        model=f"ensemble/{config.name}",
        choices=[
            ChatChoice(
                index=0,
                message=AssistantMessage(content=result.output),
                finish_reason="stop" if result.stop == "completed" else "length",
            )
        ],
        usage=CompletionUsage.of(u.input_tokens, u.output_tokens, u.cached_tokens),
    )
