"""JSON as the store receives it: events, step values and ledger ops, encoded by orjson.

Every durable step encodes its value and two to four events, and the standard library's encoder
builds a new C encoder object on every call: JSON was ~6% of a benchmark worker's samples. orjson
writes the same JSON values (compact, UTF-8 unescaped — any reader's ``json.loads`` reads both).

A step's value must read back as what the step returned, because a resumed run replays it. So a
value goes through orjson only when it is plain JSON — dicts with string keys, lists, tuples,
strings, ints, finite floats, booleans, None — and through the standard library otherwise, which
keeps its old behaviour exactly: NaN is written as ``NaN`` (and read back as NaN, where orjson's
``null`` would fail a model's validation on replay), non-string keys are converted, and an enum,
a UUID, a datetime or a dataclass is refused instead of coming back as a string.

An event is read by people's clients, not replayed: orjson writes it, what is not JSON becomes its
``str`` (as ``json.dumps(default=str)`` gave; datetimes and dataclasses included), an int beyond 64
bits falls back to the standard library, and NaN is ``null`` (the standard library's ``NaN`` is not
JSON, and browsers' ``JSON.parse`` refuses it).
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

__all__ = ["event_json", "value_json"]

_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_SCALARS = (str, int, bool, type(None))


def event_json(data: Any) -> bytes | str:
    """An event's data (or a ledger op's wire form); what is not JSON becomes its ``str``."""
    try:
        return orjson.dumps(data, default=str, option=_OPTS)
    except TypeError:  # orjson.JSONEncodeError: an int beyond 64 bits, a recursion limit
        return json.dumps(data, default=str)


def _plain(value: Any) -> bool:
    """Whether ``value`` is JSON that both libraries write alike and that reads back as itself."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            for k, item in v.items():
                if not isinstance(k, str):
                    return False
                stack.append(item)
        elif isinstance(v, list | tuple):
            stack.extend(v)
        elif isinstance(v, float):
            if not math.isfinite(v):
                return False
        elif not isinstance(v, _SCALARS):
            return False
    return True


def value_json(value: Any) -> str:
    """A step's recorded value; raises ``TypeError``/``ValueError`` for what is not JSON."""
    if _plain(value):
        try:
            return orjson.dumps(value).decode()
        except TypeError:  # an int beyond 64 bits
            pass
    return json.dumps(value)
