"""The ``StatsStore`` contract: what the service's gauges read from the store, in one call.

``/metrics`` reads it at scrape time, so every API replica reports the same figures (dashboards take
``max`` over replicas, not the sum). Counts of runs by status come from the store's per-status
indexes, for every tenant that has submitted a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["ServiceStats", "StatsStore"]


@dataclass(frozen=True)
class ServiceStats:
    #: Run-queue entries no worker has read yet, and read but not acknowledged.
    queue_waiting: int = 0
    queue_in_flight: int = 0
    #: Age in seconds of the oldest entry still waiting or in flight (None: the queue is empty).
    queue_oldest_age_s: float | None = None
    #: Entries of the run dead-letter stream.
    dead_letters: int = 0
    #: Outbox entries not yet read by a dispatcher, and being delivered.
    outbox_waiting: int = 0
    outbox_in_flight: int = 0
    #: Runs by (tenant, status), from the per-status indexes.
    runs: dict[tuple[str, str], int] = field(default_factory=dict)


@runtime_checkable
class StatsStore(Protocol):
    async def service_stats(self, now: float) -> ServiceStats: ...
