"""The stuck detector counts a call by its name, its arguments with their keys sorted, and its result."""

from __future__ import annotations

import pytest

from conclave.agents.loop.state import Progress, Stop
from conclave.schema import StopReason

RESULT = [{"content": "same", "is_error": False}]


def call(arguments: str) -> list[dict[str, str]]:
    return [{"name": "lookup", "arguments": arguments}]


def test_a_call_repeated_with_its_keys_reordered_counts_as_the_same_call() -> None:
    p = Progress(stuck_repeats=2)
    p.check_stuck(RESULT, call('{"a": 1, "b": [1, 2]}'))
    with pytest.raises(Stop) as e:
        p.check_stuck(RESULT, call('{"b":[1,2],"a":1}'))
    assert e.value.reason is StopReason.STUCK


def test_calls_with_other_values_or_arguments_that_are_not_json_are_told_apart() -> None:
    p = Progress(stuck_repeats=2)
    p.check_stuck(RESULT, call('{"a": 1}'))
    p.check_stuck(RESULT, call('{"a": 2}'))
    p.check_stuck(RESULT, call("not json {"))
    with pytest.raises(Stop):
        p.check_stuck(RESULT, call("  not json {  "))  # the same text, but for its spaces


def test_calls_that_differ_only_in_integers_beyond_64_bits_are_told_apart() -> None:
    p = Progress(stuck_repeats=2)
    p.check_stuck(RESULT, call('{"id": 12345678901234567890123}'))
    p.check_stuck(RESULT, call('{"id": 12345678901234567890124}'))  # would read as the same float
