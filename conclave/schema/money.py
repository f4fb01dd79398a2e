"""Money as the ledger counts it: integer pico-dollars (1e-12 USD), so that sums in the store are exact.
Conversions round up, so a cap is never undercounted."""

from __future__ import annotations

import math

__all__ = ["MAX_USD", "PICO", "from_pico", "to_pico"]

PICO = 10**12

MAX_USD = 1e9
"""The largest amount a cap may name: far above any real budget, and far below where ``to_pico``
overflows (a float times ``PICO`` past ~1.8e308 is infinite and has no integer)."""


def to_pico(usd: float) -> int:
    return math.ceil(round(usd * PICO, 3))


def from_pico(pico: int | float) -> float:
    return float(pico) / PICO
