"""One usage record (``schema.Usage``): built from ledger amounts, summed exactly, priced in pico-dollars;
an ensemble layer committed under the old per-ensemble ``Tally`` shape still replays."""

from __future__ import annotations

from conclave.agents.ensemble.executor import LayerResult
from conclave.schema import Usage


def test_usage_from_ledger_metrics_keeps_every_amount() -> None:
    used = {
        "input_tokens": 7,
        "output_tokens": 3,
        "cached_tokens": 2,
        "model_calls": 1,
        "usd": 1_500_000,
        "tool:search": 2,
        "tool:*": 2,
    }
    u = Usage.of_metrics(used)
    assert (u.input_tokens, u.output_tokens, u.cached_tokens, u.model_calls) == (7, 3, 2, 1)
    assert u.tool_calls == {"search": 2}  # the all-tools total is not a tool
    assert u.usd_pico == 1_500_000 and u.usd == 1.5e-6 and u.tokens == 10


def test_usage_sums_are_exact_and_addition_in_place_is_explicit() -> None:
    a = Usage(input_tokens=1, usd_pico=1, tool_calls={"x": 1})
    b = Usage(output_tokens=2, usd_pico=2, tool_calls={"x": 1, "y": 1})
    c = a + b
    assert (c.input_tokens, c.output_tokens, c.usd_pico, c.tool_calls) == (1, 2, 3, {"x": 2, "y": 1})
    assert a == Usage(input_tokens=1, usd_pico=1, tool_calls={"x": 1})  # + leaves its operands alone
    total = Usage()
    for _ in range(10):
        total += Usage(usd_pico=100_000_000_001)
    assert total.usd_pico == 1_000_000_000_010  # integers: no float drift
    assert Usage.model_validate(total.model_dump()) == total


def test_a_layer_recorded_with_the_old_tally_replays_as_usage() -> None:
    old = {
        "index": 0,
        "state": {"candidates": [{"text": "42", "origin": "L0.c0.s0"}]},
        "usage": {"requests": 2, "completions": 5, "prompt_tokens": 40, "completion_tokens": 9, "cached_tokens": 3},
        "components": [],
    }
    layer = LayerResult.model_validate(old)
    assert layer.usage == Usage(input_tokens=40, output_tokens=9, cached_tokens=3, model_calls=2)
    assert LayerResult.model_validate(layer.model_dump(mode="json")) == layer
