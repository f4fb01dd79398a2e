"""The store's JSON (orjson) reads back as the standard library's did, and refuses what it refused."""

from __future__ import annotations


def test_event_json_keeps_what_the_standard_library_wrote_for_values_that_are_not_json() -> None:
    import dataclasses
    import datetime
    import json

    from conclave.core.wire import event_json, value_json

    @dataclasses.dataclass
    class D:
        x: int

    when = datetime.datetime(2026, 12, 1, 18, 0, tzinfo=datetime.UTC)
    data = {"when": when, "d": D(1), 3: "int key", "big": 2**70, "text": "é ✓"}
    assert json.loads(event_json(data)) == json.loads(json.dumps(data, default=str))
    assert json.loads(value_json({"a": [1, 2.5, None, "é"]})) == {"a": [1, 2.5, None, "é"]}
    for not_json in (when, D(1), {1, 2}):
        try:
            value_json({"v": not_json})
        except TypeError:
            continue
        raise AssertionError(f"a step value holding {not_json!r} was written")


def test_a_step_value_reads_back_as_the_step_returned_it() -> None:
    import enum
    import json
    import math
    import uuid

    from conclave.core.wire import value_json

    back = json.loads(value_json({"score": float("nan"), "inf": float("inf"), "n": None}))
    assert math.isnan(back["score"]) and back["inf"] == float("inf") and back["n"] is None
    assert json.loads(value_json({1: "a"})) == {"1": "a"}  # converted, as the standard library did
    assert json.loads(value_json({"big": 2**70})) == {"big": 2**70}

    class Colour(enum.Enum):
        RED = "red"

    for not_json in (Colour.RED, uuid.uuid4()):
        try:
            value_json([not_json])
        except TypeError:
            continue
        raise AssertionError(f"a step value holding {not_json!r} was written (it would come back a str)")
