"""Prices and the unified cost.

The unified cost of a run (the BATS paper's metric) is its token cost plus, for every tool, the
number of calls times the tool's price. Money is counted in integer pico-dollars (1e-12 USD) so that
sums in Redis are exact; per-call costs round up, so a cap is never undercounted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from conclave.core.money import to_pico
from conclave.schema.budget import Price

__all__ = ["Pricing"]


class Pricing:
    """Per-model token prices and per-tool call prices (USD)."""

    def __init__(self, models: Mapping[str, Price] | None = None, tools: Mapping[str, float] | None = None) -> None:
        self.models = dict(models or {})
        self.tools = dict(tools or {})

    def price(self, model: str) -> Price:
        return self.models.get(model) or Price()

    def model_cost(self, model: str, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> int:
        """Pico-dollars for one call. ``input_tokens`` includes ``cached_tokens`` (OpenAI's counting)."""
        p = self.price(model)
        cached = min(cached_tokens, input_tokens)
        # price per million tokens = pico per token * 1e6 / 1e12 ... pico/token = usd_per_M * 1e6
        micro = (input_tokens - cached) * p.input + cached * p.cached + output_tokens * p.output
        return math.ceil(round(micro * 1_000_000, 3))

    def output_tokens_for(self, model: str, pico_room: int, input_tokens: int) -> int | None:
        """How many output tokens fit in ``pico_room`` after the prompt; None if output is free."""
        p = self.price(model)
        if p.output <= 0:
            return None
        left = pico_room - self.model_cost(model, input_tokens, 0)
        return max(0, int(left // (p.output * 1_000_000)))

    def tool_cost(self, tool: str) -> int:
        usd = self.tools.get(tool, self.tools.get("*", 0.0))
        return to_pico(usd)
