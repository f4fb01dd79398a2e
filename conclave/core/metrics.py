"""Conclave's Prometheus metrics: every instrument, the tenant-label bound, and the exposition.

One registry per process (prometheus-client's default). Process-local instruments (counters and
histograms) are recorded where things happen — the worker's loops, the meter's model calls, the
runner, the webhook dispatcher. Service-wide gauges (queue depth and age, runs by status, approvals
waiting, dead letters, the outbox) are read from the store when ``/metrics`` is scraped on the API
(``refresh_from_store``), so every API replica reports the same figure: take ``max`` over replicas.

**Tenant labels are bounded.** A process gives its own ``tenant`` label value to the first
``metrics.max_tenants`` tenants it sees (default 50) and counts every later one as ``_other``, so a
deployment with thousands of tenants cannot blow up the series count; set it to 0 to never label by
tenant. Per-tenant figures beyond the bound are in the store (``/v1/runs``, the ledger).
"""

from __future__ import annotations

import contextvars
import errno
import logging
import threading
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest, start_http_server

from .store_stats import ServiceStats

__all__ = [
    "CONTENT_TYPE_LATEST",
    "RunLabels",
    "child",
    "configure",
    "exposition",
    "refresh_from_store",
    "run_labels",
    "serve_metrics",
    "tenant_label",
]

log = logging.getLogger(__name__)

OTHER = "_other"


@dataclass(frozen=True)
class RunLabels:
    tenant: str = "default"
    kind: str = "none"


#: The run whose work is being recorded (set by ``telemetry.run_span`` for the body of a run).
_OUTSIDE_RUNS = RunLabels()  # frozen: safe to share as the default
run_labels: contextvars.ContextVar[RunLabels] = contextvars.ContextVar("conclave_run_labels", default=_OUTSIDE_RUNS)


class _TenantLabels:
    """The first ``limit`` tenants get their own label value; the rest share ``_other``."""

    def __init__(self, limit: int = 50) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, tenant: str) -> str:
        if tenant in self._seen:
            return tenant
        with self._lock:
            if len(self._seen) < self.limit:
                self._seen.add(tenant)
                return tenant
        return OTHER


_tenants = _TenantLabels()


_children: dict[tuple[object, tuple[tuple[str, str], ...]], Any] = {}


def child(metric: Counter | Histogram, **labels: str) -> Any:
    """``metric.labels(**labels)``, kept: prometheus-client validates and locks on every ``labels``
    call, and a worker records a step's duration, a model call's and its tokens several times per
    step. For counters and histograms only, whose children are never removed (a cleared gauge would
    leave a stale child here). Keyed by the labels' names and values, so the order a call site
    passes them in does not matter for correctness."""
    key = (metric, tuple(labels.items()))
    got = _children.get(key)
    if got is None:
        got = _children[key] = metric.labels(**labels)
    return got


def tenant_label(tenant: str) -> str:
    return _tenants(tenant)


def configure(*, max_tenants: int) -> None:
    """Apply ``[metrics]`` settings to this process (the label bound)."""
    _tenants.limit = max_tenants


_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

# -- service-wide gauges (read from the store at scrape time on the API; workers set the queue's) --
QUEUE_DEPTH = Gauge("conclave_queue_depth", "Run-queue entries: waiting for a worker, or held by one.", ["state"])
QUEUE_OLDEST_AGE = Gauge(
    "conclave_queue_oldest_age_seconds", "Age of the oldest run-queue entry not yet acknowledged (0: none)."
)
RUNS = Gauge("conclave_runs", "Runs by tenant and status, from the store's per-status indexes.", ["tenant", "status"])
APPROVALS_WAITING = Gauge("conclave_approvals_waiting", "Runs waiting for a person's decision.", ["tenant"])
DEAD_LETTERS = Gauge("conclave_dead_letters", "Entries of the run dead-letter stream.")
OUTBOX_DEPTH = Gauge("conclave_webhook_outbox_depth", "Outbox entries: waiting, or being delivered.", ["state"])

# -- per process -----------------------------------------------------------------------------------
RUNS_FINISHED = Counter(
    "conclave_runs_finished", "Runs this worker finished, by tenant, status and kind.", ["tenant", "status", "kind"]
)
STEP_SECONDS = Histogram(
    "conclave_step_seconds", "Durable steps (their work and commit), by run kind.", ["kind"], buckets=_LATENCY
)
MODEL_CALL_SECONDS = Histogram(
    "conclave_model_call_seconds", "Metered model calls, by model and outcome.", ["model", "outcome"], buckets=_LATENCY
)
LEASE_EXPIRIES = Counter("conclave_lease_expiries", "Runs this worker lost because its lease ran out.")
REDELIVERIES = Counter(
    "conclave_queue_redeliveries", "Queue entries this worker took over from a worker that stopped renewing."
)
LEDGER_REFUSALS = Counter(
    "conclave_ledger_refusals", "Reservations the budget ledger refused, by limit and scope level.", ["limit", "scope"]
)
TOKENS = Counter(
    "conclave_tokens", "Model tokens, by tenant, model and type (input, output).", ["tenant", "model", "type"]
)
COST_USD = Counter("conclave_cost_usd", "Model cost in USD, by tenant and model.", ["tenant", "model"])
WEBHOOK_ATTEMPTS = Counter(
    "conclave_webhook_attempts",
    "Webhook delivery attempts, by result (ok, http_error, network_error, refused).",
    ["result"],
)
WEBHOOK_DELIVERIES = Counter(
    "conclave_webhook_deliveries", "Webhook deliveries that ended, by outcome (delivered, dead, dropped).", ["outcome"]
)
SCHEDULED_RUNS = Counter("conclave_scheduled_runs", "Runs this worker's scheduler submitted for schedule ticks.")


def refresh_from_store(stats: ServiceStats) -> None:
    """Set the service-wide gauges from one ``StatsStore.service_stats`` reading."""
    QUEUE_DEPTH.labels(state="waiting").set(stats.queue_waiting)
    QUEUE_DEPTH.labels(state="in_flight").set(stats.queue_in_flight)
    QUEUE_OLDEST_AGE.set(stats.queue_oldest_age_s or 0.0)
    DEAD_LETTERS.set(stats.dead_letters)
    OUTBOX_DEPTH.labels(state="waiting").set(stats.outbox_waiting)
    OUTBOX_DEPTH.labels(state="in_flight").set(stats.outbox_in_flight)
    runs: dict[tuple[str, str], int] = {}
    waiting: dict[str, int] = {}
    for (tenant, status), n in stats.runs.items():
        t = tenant_label(tenant)
        runs[(t, status)] = runs.get((t, status), 0) + n
        if status == "waiting":
            waiting[t] = waiting.get(t, 0) + n
    RUNS.clear()
    for (t, status), n in runs.items():
        RUNS.labels(tenant=t, status=status).set(n)
    APPROVALS_WAITING.clear()
    for t, n in waiting.items():
        APPROVALS_WAITING.labels(tenant=t).set(n)


def exposition() -> bytes:
    """This process's metrics in the Prometheus text format."""
    return generate_latest()


def serve_metrics(port: int, *, span: int = 1, host: str = "0.0.0.0") -> int | None:
    """Start a ``/metrics`` listener on the first free port of ``port … port + span - 1`` (several
    workers on one host each get one); returns the port, or None when all were taken."""
    for p in range(port, port + max(1, span)):
        try:
            start_http_server(p, addr=host)
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
            continue
        log.info("metrics on http://%s:%d/metrics", host, p)
        return p
    log.warning("metrics: ports %d-%d are all taken; this process serves no /metrics", port, port + span - 1)
    return None
