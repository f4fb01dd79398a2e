"""Error bodies are always JSON, whatever the offending value was."""

from __future__ import annotations

import json
import math

from conclave.api.errors import describe_errors


def test_error_details_are_json_safe_for_bytes_and_non_finite_floats() -> None:
    # Both values crashed the error handler once (a 500 instead of a 422).
    msg, details = describe_errors(
        [
            {"loc": ("body", "input"), "msg": "bad", "type": "string_type", "input": b"\xff\xfe"},
            {"loc": ("body", "budget", "usd"), "msg": "bad", "type": "finite_number", "input": math.inf},
            {"loc": ("body", "x"), "msg": "bad", "type": "string_type", "input": "y" * 500},
        ]
    )
    json.dumps(details, allow_nan=False)
    assert details[0]["field"] == "input" and details[1]["field"] == "budget.usd"
    assert len(details[2]["value"]) <= 120 and "input" in msg


def test_unknown_field_is_named_in_the_message() -> None:
    msg, details = describe_errors(
        [{"loc": ("body", "bogus"), "msg": "Extra inputs are not permitted", "type": "extra_forbidden", "input": 1}]
    )
    assert details[0]["message"] == "unknown field 'bogus'" and "bogus" in msg
