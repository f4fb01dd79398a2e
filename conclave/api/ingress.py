"""The API as a Ray Serve ingress: the FastAPI app built inside each replica from its settings.

HTTP exists only here, at the edge; inside the cluster the API talks to models through handles.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application

from conclave.config import Settings, load_settings

__all__ = ["ApiArgs", "ApiDeployment", "build_app", "build_fastapi"]


class ApiArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    replicas: int = Field(default=1, ge=1, le=256)
    settings: dict[str, Any] | None = None
    redis_url: str | None = None
    router: str = Field(default="serve", pattern="^(serve|local)$")


def _openai_routers(settings: Settings, router_mode: str) -> list[APIRouter]:
    """The OpenAI-compatible endpoint, served from the model deployments."""
    try:
        from conclave.api.openai_compat import build_openai_router
    except ImportError:  # pragma: no cover - the module ships with the package
        return []
    holder: dict[str, Any] = {}

    def get_router() -> Any:
        if "r" not in holder:
            if router_mode == "serve":
                from conclave.cluster.pool import ServeRouter

                holder["r"] = ServeRouter(settings.models)
            else:
                from conclave.controller.worker import local_router

                holder["r"] = local_router(settings)
        return holder["r"]

    kwargs: dict[str, Any] = {"default_model": settings.resolved_default_model()}
    kwargs["ensemble_chat"] = make_ensemble_chat(settings, get_router)
    return [build_openai_router(get_router, **kwargs)]


class _NoRunSink:
    """Chat completions through the OpenAI endpoint belong to no run, so there is no run ledger to
    charge; the usage is returned to the caller in the response instead."""

    async def ledger_op(self, op: Any) -> None:
        return None


def make_ensemble_chat(settings: Settings, get_router: Callable[[], Any]) -> Callable[[str, Any], Awaitable[Any]]:
    """``model="ensemble/<name>"`` on the OpenAI endpoint: run the named ensemble over the served models."""
    from conclave.agents.ensemble import ensemble_chat
    from conclave.agents.meter import Meter
    from conclave.core.ledger import RunLedger

    pricing = settings.pricing()

    async def chat(name: str, request: Any) -> Any:
        meter = Meter(
            ledger=RunLedger(None, "openai"),  # type: ignore[arg-type]  # no caps: never touches the store
            pricing=pricing,
            router=get_router(),
            sink=_NoRunSink(),
        )
        return await ensemble_chat(
            name.removeprefix("ensemble/"),
            request,
            meter,
            extra_dirs=[settings.ensembles_dir],
            default_model=settings.resolved_default_model(),
        )

    return chat


def build_fastapi(settings: Settings, redis_url: str, router_mode: str = "serve") -> FastAPI:
    from conclave.api.app import create_app

    return create_app(settings, redis_url, extra_routers=_openai_routers(settings, router_mode))


@serve.deployment(name="api", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000)
@serve.ingress()
class ApiDeployment:
    def __init__(self, args: dict[str, Any]) -> None:
        a = ApiArgs.model_validate(args)
        self.settings = Settings.model_validate(a.settings) if a.settings is not None else load_settings()
        if not self.settings.models:
            from conclave.config import default_cpu_model

            self.settings.models = [default_cpu_model()]
        url = a.redis_url or self.settings.redis_url or os.environ.get("CONCLAVE_REDIS_URL")
        if not url:
            raise ValueError("the API needs a Redis URL: set CONCLAVE_REDIS_URL or pass redis_url")
        self.redis_url = url
        self.router_mode = a.router

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_fastapi(self.settings, self.redis_url, self.router_mode)


def build_app(args: dict[str, Any]) -> Application:
    a = ApiArgs.model_validate(args)
    return ApiDeployment.options(num_replicas=a.replicas).bind(args)  # type: ignore[attr-defined,no-any-return]
