"""Budget periods in UTC: the id of the period a time falls in, and its bounds.

The Redis scripts compute the same ids on Redis's clock (``controller/lua/tenant.lua``); a test checks the two
agree at month and year boundaries and on leap days.
"""

from __future__ import annotations

from datetime import UTC, datetime

from conclave.schema import Period

__all__ = ["period_bounds", "period_id"]


def period_id(period: Period, ts: float) -> str:
    if period == "none":
        return "all"
    d = datetime.fromtimestamp(ts, UTC)
    return f"{d.year:04d}-{d.month:02d}" if period == "monthly" else f"{d.year:04d}-{d.month:02d}-{d.day:02d}"


def period_bounds(period: Period, ts: float) -> tuple[float | None, float | None]:
    """Unix times the period containing ``ts`` starts and ends (None, None for ``none``)."""
    if period == "none":
        return None, None
    d = datetime.fromtimestamp(ts, UTC)
    if period == "daily":
        start = datetime(d.year, d.month, d.day, tzinfo=UTC)
        return start.timestamp(), start.timestamp() + 86400
    start = datetime(d.year, d.month, 1, tzinfo=UTC)
    end = datetime(d.year + (d.month == 12), d.month % 12 + 1, 1, tzinfo=UTC)
    return start.timestamp(), end.timestamp()
