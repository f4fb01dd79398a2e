"""``GET /metrics``: the Prometheus text format, for this API process and the service's gauges.

The gauges read from the store (queue depth and age, runs by status, approvals waiting, dead letters,
the outbox) are refreshed at each scrape; counters and histograms are this process's. Workers serve
their own on a listener (``metrics.worker_port``). With auth on the route needs an admin key (the
labels name tenants): give Prometheus one as a bearer token.
"""

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from conclave.core import metrics

from .auth import Caller, admin_dependency
from .deps import ERRORS, ServicesLike

__all__ = ["metrics_router"]


def metrics_router(services: ServicesLike) -> APIRouter:
    r = APIRouter(tags=["service"], responses=ERRORS)
    AdminDep = Annotated[Caller, Depends(admin_dependency(lambda: services.service))]
    metrics.configure(max_tenants=services.settings.metrics.max_tenants)

    @r.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}},
    )
    async def prometheus(_: AdminDep) -> Response:
        metrics.refresh_from_store(await services.service.store.service_stats(time.time()))
        return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE_LATEST)

    return r
