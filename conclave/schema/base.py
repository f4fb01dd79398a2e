"""The base of every boundary model, and the clock every record uses."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

__all__ = ["StrictModel", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class StrictModel(BaseModel):
    """Base for every boundary model: unknown fields are rejected by name."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
