"""JSON as the store receives it: events, step values and ledger ops, encoded by orjson.

Every durable step encodes its value and two to four events, and the standard library's encoder
builds a new C encoder object on every call: JSON was ~6% of a benchmark worker's samples. orjson
writes the same JSON values (compact, UTF-8 unescaped — any reader's ``json.loads`` reads both).
Where the two libraries would disagree, the standard library's behaviour is kept: datetimes and
dataclasses are not turned into JSON by orjson here (an event gets their ``str``, as
``json.dumps(default=str)`` gave; a step value that holds one is refused, so a replay never returns
a string where the first run returned a datetime), and a value orjson cannot write at all (an int
beyond 64 bits) falls back to the standard library. One difference is kept on purpose: NaN and the
infinities are written as ``null`` (the standard library writes ``NaN``, which is not JSON and which
browsers' ``JSON.parse`` refuses).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["event_json", "value_json"]

_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def event_json(data: Any) -> bytes | str:
    """An event's data (or a ledger op's wire form); what is not JSON becomes its ``str``."""
    try:
        return orjson.dumps(data, default=str, option=_OPTS)
    except TypeError:  # orjson.JSONEncodeError: an int beyond 64 bits, a recursion limit
        return json.dumps(data, default=str)


def value_json(value: Any) -> str:
    """A step's recorded value; raises ``TypeError``/``ValueError`` for what is not JSON."""
    try:
        return orjson.dumps(value, option=_OPTS).decode()
    except TypeError:
        return json.dumps(value)
