"""Workers as a Ray Serve application: each replica is a Ray actor running one ``Worker`` loop.

Serve gives the workers what Kubernetes deployments need — a replica count in ``serveConfigV2``,
restarts of dead replicas, rolling updates — with no HTTP route of their own. Model calls go to
the model deployments through DeploymentHandles (``ServeRouter``), never over HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application

from conclave.config import Settings, load_settings
from conclave.core.gc_tuning import tune_for_service

__all__ = ["WorkerArgs", "WorkerDeployment", "build_app"]

log = logging.getLogger(__name__)


class WorkerArgs(BaseModel):
    """Arguments of the ``workers`` application (``serveConfigV2`` args)."""

    model_config = ConfigDict(extra="forbid")

    workers: int = Field(default=2, ge=1, le=1024, description="Worker replicas (Ray actors).")
    concurrency: int | None = Field(default=None, ge=1, description="Runs per worker at once.")
    settings: dict[str, Any] | None = Field(default=None, description="Settings; default: from env and conclave.toml.")
    redis_url: str | None = None
    router: str = Field(
        default="serve",
        pattern="^(serve|local)$",
        description="serve: model deployments; local: engines in the worker.",
    )


@serve.deployment(
    name="worker",
    ray_actor_options={"num_cpus": 0},
    max_ongoing_requests=4,
    health_check_period_s=5,
)
class WorkerDeployment:
    async def __init__(self, args: dict[str, Any]) -> None:  # type: ignore[misc]  # Serve awaits async constructors
        from conclave.controller.worker import Worker, local_router

        a = WorkerArgs.model_validate(args)
        settings = Settings.model_validate(a.settings) if a.settings is not None else load_settings()
        if not settings.models:
            from conclave.config import default_cpu_model

            settings.models = [default_cpu_model()]
        url = a.redis_url or settings.redis_url or os.environ.get("CONCLAVE_REDIS_URL")
        if not url:
            raise ValueError("the workers need a Redis URL: set CONCLAVE_REDIS_URL or pass redis_url")
        if a.router == "serve":
            from conclave.cluster.pool import ServeRouter

            router: Any = ServeRouter(settings.models)
        else:
            router = local_router(settings)
        replica = serve.get_replica_context().replica_id.unique_id
        self.worker = Worker(settings, router, redis_url=url, name=f"worker-{replica}", concurrency=a.concurrency)
        tune_for_service()  # this replica's process is a worker's: see conclave.core.gc_tuning
        self.task = asyncio.ensure_future(self.worker.run())

    async def check_health(self) -> None:
        if self.task.done():
            exc = self.task.exception() if not self.task.cancelled() else None
            raise RuntimeError(f"worker loop stopped: {exc!r}")

    async def status(self) -> dict[str, Any]:
        return {"name": self.worker.name, "active": len(self.worker.active), "completed": dict(self.worker.completed)}

    async def __del__(self) -> None:
        self.worker.stop()


def build_app(args: dict[str, Any]) -> Application:
    a = WorkerArgs.model_validate(args)
    return WorkerDeployment.options(num_replicas=a.workers).bind(args)  # type: ignore[attr-defined,no-any-return]
