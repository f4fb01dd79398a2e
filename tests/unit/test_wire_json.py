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
