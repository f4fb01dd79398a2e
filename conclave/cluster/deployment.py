"""The Ray Serve model deployment: one deployment per ``ModelSpec``, each replica an actor holding an
``Engine``.

Layout. All model deployments live in **one** Serve application (``models`` by default) whose
ingress is a tiny ``ModelIndex`` deployment that knows the specs. One application keeps a KubeRay
``serveConfigV2`` to a single entry (``import_path: conclave.cluster.deployment:build_app`` with
``args: {models: [...]}``), and lets a caller discover what is served (``ServeRouter.connect``)
without reading ``conclave.toml``. Each model is its own deployment inside it, named
``model.<name>``, so replicas, autoscaling and resources are per model and routing never crosses
models. Redeploying the application with a changed model list adds or removes deployments in place.

Why the replica methods are ``async``: Serve runs a *sync* method in a thread pool, so concurrent
requests would reach one ``llama.cpp`` object at once and abort the process (DESIGN.md). Engines
serialise themselves where they must; the replica only forwards. ``max_ongoing_requests`` comes
from the spec and is set deliberately above Serve's default of 5, because the engine's own queue
or batching, not Serve's cap, should limit a replica (DESIGN.md: 78 ms vs 1.3 ms per call).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from ray import serve
from ray.serve.deployment import Application, Deployment
from ray.serve.handle import DeploymentHandle

from conclave.cluster.config import ModelSpec, unique_names
from conclave.cluster.engines import build_engine
from conclave.schema.chat import ChatChunk, ChatRequest, ChatResponse

__all__ = [
    "APP_NAME",
    "AppArgs",
    "ModelIndex",
    "ModelReplica",
    "RoutedRequest",
    "build_app",
    "deploy_models",
    "deployment_name",
    "model_deployment",
]

logger = logging.getLogger(__name__)

APP_NAME = "models"
INDEX_NAME = "ModelIndex"
_PREFIX_ROUTER = "ray.serve.llm.request_router.PrefixCacheAffinityRouter"


def deployment_name(model: str) -> str:
    """The Serve deployment that serves ``model`` (model names never contain '#', Serve's delimiter)."""
    return f"model.{model}"


@dataclasses.dataclass(frozen=True, slots=True)
class RoutedRequest:
    """What travels from the pool to a replica.

    ``messages`` repeats the prompt as plain ``{"role", "content"}`` dicts because Serve's
    prefix-affinity router reads ``arg.messages`` of that shape to route requests that share a
    prefix to the replica whose cache already holds it; ``request`` is the full, validated request.
    """

    request: ChatRequest
    messages: list[dict[str, str]]

    @classmethod
    def of(cls, request: ChatRequest) -> RoutedRequest:
        return cls(request=request, messages=[{"role": m.role, "content": m.text()} for m in request.messages])


class ModelReplica:
    """One replica of one model: builds the engine from the spec in the replica's own process
    (the model is loaded there, never in the caller) and forwards calls to it."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = ModelSpec.model_validate(spec)
        self.engine = build_engine(self.spec)
        self.inflight = 0
        logger.info("replica of %s ready (engine %s, pid %d)", self.spec.name, self.spec.engine, os.getpid())

    async def chat(self, routed: RoutedRequest) -> ChatResponse:
        self.inflight += 1
        try:
            response = await self.engine.chat(routed.request)
        finally:
            self.inflight -= 1
        response.model = self.spec.name
        return response

    async def stream(self, routed: RoutedRequest) -> AsyncIterator[ChatChunk]:
        """Streams the engine's chunks. When the caller stops reading, Serve cancels this generator
        and ``aclose`` reaches the engine, which aborts the generation."""
        chunks = self.engine.stream(routed.request)
        self.inflight += 1
        try:
            async for chunk in chunks:
                chunk.model = self.spec.name
                yield chunk
        finally:
            self.inflight -= 1
            await chunks.aclose()  # type: ignore[attr-defined]

    async def check_health(self) -> None:
        """Serve's periodic health check: an unhealthy replica is replaced."""
        await self.engine.health()

    async def whoami(self) -> dict[str, Any]:
        """Which replica answered and how many calls it is serving: used by operators and tests
        to find a replica's actor."""
        ctx = serve.get_replica_context()
        return {
            "model": self.spec.name,
            "replica": ctx.replica_id.unique_id,
            "actor_name": ctx.replica_id.to_full_id_str(),
            "pid": os.getpid(),
            "inflight": self.inflight,
        }


class ModelIndex:
    """Ingress of the models application: holds the specs so callers can discover the served
    models, their context windows and prices without reading configuration."""

    def __init__(self, specs: list[dict[str, Any]], **_models: DeploymentHandle[Any]) -> None:
        # The model deployments are bound as arguments only so that Serve deploys them with
        # this application; calls go straight to their handles, not through the index.
        self.specs = [ModelSpec.model_validate(s) for s in specs]

    async def models(self) -> list[dict[str, Any]]:
        return [s.model_dump(mode="json") for s in self.specs]

    async def __call__(self, *_: Any) -> dict[str, Any]:
        return {"models": [s.name for s in self.specs]}


class AppArgs(BaseModel):
    """Arguments of ``build_app`` (the ``args`` of a serveConfigV2 application)."""

    model_config = ConfigDict(extra="forbid")

    models: list[ModelSpec] = Field(min_length=1, description="The models to serve, one deployment each.")

    @field_validator("models")
    @classmethod
    def _unique(cls, v: list[ModelSpec]) -> list[ModelSpec]:
        return unique_names(v)


def _serve_options(spec: ModelSpec) -> dict[str, Any]:
    """Serve deployment options that a spec implies."""
    opts: dict[str, Any] = {
        "name": deployment_name(spec.name),
        "max_ongoing_requests": spec.max_ongoing_requests,
        # Queue at the caller's router rather than fail: a model call waits for a replica.
        "max_queued_requests": -1,
        "ray_actor_options": {"num_cpus": spec.num_cpus, "num_gpus": spec.num_gpus},
        "health_check_period_s": 10.0,
        "health_check_timeout_s": 30.0,
        "graceful_shutdown_timeout_s": 10.0,
    }
    if spec.autoscaling is not None:
        a = spec.autoscaling
        opts["autoscaling_config"] = {
            "min_replicas": a.min_replicas,
            "initial_replicas": max(a.min_replicas, 1),
            "max_replicas": a.max_replicas,
            "target_ongoing_requests": a.target_ongoing_requests,
        }
    else:
        opts["num_replicas"] = spec.replicas
    if spec.engine == "vllm":
        from conclave.cluster.engines.vllm import serve_options

        opts.update(serve_options(spec))
    if spec.routing == "prefix_affinity":
        from ray.serve.config import RequestRouterConfig

        try:
            # Serve accepts the class by import path; its annotation names only the class object.
            opts["request_router_config"] = RequestRouterConfig(request_router_class=_PREFIX_ROUTER)  # type: ignore[arg-type]
        except ImportError as e:
            raise ValueError(
                f"model {spec.name!r}: routing 'prefix_affinity' needs Ray Serve LLM's router "
                f"({_PREFIX_ROUTER}), which cannot be imported here ({e}); install 'ray[llm]' "
                "or use routing 'power_of_two'"
            ) from e
    return opts


def model_deployment(spec: ModelSpec) -> Deployment:
    """The Serve deployment for one model (not yet bound)."""
    deployment: Deployment = serve.deployment(ModelReplica)  # type: ignore[assignment]  # Serve's overloads
    return deployment.options(**_serve_options(spec))


def build_app(args: Mapping[str, Any]) -> Application:
    """Serve application builder: ``{"models": [ModelSpec dicts]}`` → one application holding one
    deployment per model behind a ``ModelIndex`` ingress.

    Referenced from a KubeRay serveConfigV2 as ``conclave.cluster.deployment:build_app``. A bad
    argument raises ``ValueError`` naming the field, so ``serve deploy`` fails before any replica
    starts.
    """
    try:
        parsed = AppArgs.model_validate(dict(args))
    except ValidationError as e:
        from conclave.schema.errors import format_validation_error

        raise ValueError("build_app args:\n" + format_validation_error(e)) from None
    bound = {f"m{i}": model_deployment(s).bind(s.model_dump(mode="json")) for i, s in enumerate(parsed.models)}
    index_deployment: Deployment = serve.deployment(ModelIndex)  # type: ignore[assignment]
    index = index_deployment.options(
        name=INDEX_NAME, num_replicas=1, max_ongoing_requests=1000, ray_actor_options={"num_cpus": 0}
    )
    return index.bind([s.model_dump(mode="json") for s in parsed.models], **bound)


def deploy_models(
    specs: Iterable[ModelSpec | Mapping[str, Any]],
    *,
    app_name: str = APP_NAME,
    blocking: bool = True,
    http_options: Mapping[str, Any] | None = None,
) -> list[ModelSpec]:
    """``serve.run`` the models application on the connected Ray cluster (``ray.init`` first).

    Returns the validated specs; build a ``ServeRouter(specs, app_name=app_name)`` to call them.
    ``blocking=True`` returns once every replica is up (its model loaded); ``False`` returns as soon
    as the application is submitted. The application has no HTTP route (models are reached through
    handles; HTTP is only at the edge, DESIGN.md). ``http_options`` are passed to ``serve.start``
    for callers that start Serve here and also want its proxy, e.g. ``{"host": "127.0.0.1",
    "port": 8000}``; Serve's cluster-wide options are fixed by whoever starts it first.
    """
    from ray.serve.api import _run

    parsed = [s if isinstance(s, ModelSpec) else ModelSpec.model_validate(s) for s in specs]
    app = build_app({"models": [s.model_dump(mode="json") for s in parsed]})
    if http_options is not None:
        serve.start(http_options=dict(http_options))
    _run(app, name=app_name, route_prefix=None, _blocking=blocking)
    return parsed
