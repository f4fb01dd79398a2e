"""``GET /metrics``: the Prometheus text format, for this API process and the service's gauges.

The gauges read from the store (queue depth and age, runs by status, approvals waiting, dead letters,
the outbox) are refreshed at each scrape; counters and histograms are this process's. Workers serve
their own on a listener (``metrics.worker_port``). With auth on, the route needs the metrics token
(``metrics.token``, or ``CONCLAVE_METRICS_TOKEN`` in the environment of a Serve replica) or an admin
key, as a bearer token: the labels name tenants.
"""

import hmac
import os
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from conclave.core import metrics

from .auth import SecretDep, caller_of
from .deps import ERRORS, ServicesLike
from .errors import ApiError

__all__ = ["metrics_router"]


def metrics_router(services: ServicesLike) -> APIRouter:
    r = APIRouter(tags=["service"], responses=ERRORS)
    metrics.configure(max_tenants=services.settings.metrics.max_tenants)
    cfg = services.settings.metrics.token
    token = cfg.get_secret_value() if cfg else os.environ.get("CONCLAVE_METRICS_TOKEN") or None

    async def reader(request: Request, secret: SecretDep) -> None:
        """The metrics token, or an admin key (the app's one key check, like every other route)."""
        if token and secret and hmac.compare_digest(secret.encode(), token.encode()):
            return
        caller = await caller_of(request, secret)
        if not caller.admin:
            raise ApiError(403, "forbidden", "/metrics needs the metrics token or an admin key")

    @r.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}},
    )
    async def prometheus(_: Annotated[None, Depends(reader)]) -> Response:
        metrics.refresh_from_store(await services.service.store.service_stats(time.time()))
        return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE_LATEST)

    return r
