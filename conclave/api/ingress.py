"""The API as a Ray Serve ingress: the FastAPI app built inside each replica from its settings.

HTTP exists only here, at the edge; inside the cluster the API talks to models through handles.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application

from conclave.config import Settings, load_settings

if TYPE_CHECKING:
    from conclave.api.auth import Caller
    from conclave.api.openai_compat import EnsembleChat
    from conclave.core.store import RunStore
    from conclave.schema.chat import ChatRequest, ChatResponse

__all__ = ["ApiArgs", "ApiDeployment", "build_app", "build_fastapi", "make_ensemble_chat", "mount_openai"]


class ApiArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    replicas: int = Field(default=1, ge=1, le=256)
    settings: dict[str, Any] | None = None
    redis_url: str | None = None
    router: str = Field(default="serve", pattern="^(serve|local)$")


def _model_router(settings: Settings, router_mode: str) -> Callable[[], Any]:
    """The models, reached through the Serve deployments (``serve``) or engines in this process
    (``local``), built on first use in the serving process."""
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

    return get_router


def mount_openai(
    app: FastAPI, settings: Settings, get_router: Callable[[], Any], get_store: Callable[[], RunStore]
) -> None:
    """The OpenAI-compatible endpoint on ``app``, every call metered to the caller's tenant."""
    from conclave.api.openai_compat import build_openai_router
    from conclave.controller.calls import EndpointCalls

    pricing = settings.pricing()
    app.include_router(
        build_openai_router(
            get_router,
            get_calls=lambda: EndpointCalls(get_store(), get_router(), pricing),
            default_model=settings.resolved_default_model(),
            ensemble_chat=make_ensemble_chat(settings, get_router, get_store),
        )
    )


def make_ensemble_chat(
    settings: Settings,
    get_router: Callable[[], Any],
    get_store: Callable[[], RunStore],
    *,
    max_parse_retries: int = 2,
) -> EnsembleChat:
    """``model="ensemble/<name>"`` on the OpenAI endpoint: run the named ensemble over the served
    models for the caller, under a per-request ceiling (see ``conclave.api.ceiling``): a worst case
    above ``settings.ensemble_ceiling`` is a 400 before any call, and every inner call is reserved
    against that worst case and against the caller's tenant and key budgets (a ``CallLedger``)."""
    from conclave.agents.ensemble import ConfigFileError, EnsembleError, ensemble_chat, resolve_ensemble
    from conclave.api.ceiling import worst_case
    from conclave.api.openai_compat import OpenAIError
    from conclave.controller.calls import EndpointCalls, is_quota_refusal
    from conclave.core.ledger import BudgetExhausted

    pricing = settings.pricing()
    ceiling = settings.ensemble_ceiling

    async def chat(name: str, request: ChatRequest, caller: Caller) -> ChatResponse:
        try:
            config = resolve_ensemble(name.removeprefix("ensemble/"), [settings.ensembles_dir])
        except ConfigFileError as e:
            raise OpenAIError(404, str(e), param="model", code="model_not_found") from None
        worst = worst_case(config, request.token_limit, max_parse_retries)
        if worst.exceeds(ceiling):
            mt = f"max_tokens={request.token_limit}" if request.token_limit else "its components' own max_tokens"
            raise OpenAIError(
                400,
                f"ensemble {config.name!r} with {mt} may make up to {worst.model_calls} model calls writing up to "
                f"{worst.output_tokens} output tokens; this server allows at most {ceiling.model_calls} calls and "
                f"{ceiling.output_tokens} output tokens per request (lower max_tokens, or use a smaller ensemble)",
                param="max_tokens",
                code="ensemble_over_ceiling",
            )
        meter = EndpointCalls(get_store(), get_router(), pricing).meter(caller.tenant, caller.key_id, worst.caps())
        try:
            return await ensemble_chat(
                config,
                request,
                meter,
                extra_dirs=[settings.ensembles_dir],
                default_model=settings.resolved_default_model(),
                max_parse_retries=max_parse_retries,
            )
        except EnsembleError as e:
            raise OpenAIError(400, str(e), param="model") from None
        except BudgetExhausted as e:
            if is_quota_refusal(e.scope):
                raise
            raise OpenAIError(
                400, f"ensemble {config.name!r} reached this request's ceiling before its first layer finished: {e}"
            ) from None

    return chat


def build_fastapi(settings: Settings, redis_url: str, router_mode: str = "serve") -> FastAPI:
    from conclave.api.app import create_app

    app = create_app(settings, redis_url)
    mount_openai(app, settings, _model_router(settings, router_mode), lambda: app.state.services.service.store)
    return app


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
