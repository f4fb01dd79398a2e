"""Money in the ledger: integer pico-dollars (1e-12 USD), so that sums in the store are exact. Conversions
round up, so a cap is never undercounted."""

from __future__ import annotations

import math

__all__ = ["PICO", "from_pico", "to_pico"]

PICO = 10**12


def to_pico(usd: float) -> int:
    return math.ceil(round(usd * PICO, 3))


def from_pico(pico: int | float) -> float:
    return float(pico) / PICO
