"""``ServeRouter``: the production ``ModelRouter``, over Ray Serve deployment handles.

Routing among a model's replicas is Serve's (power-of-two choices by default, prefix affinity when
the spec asks for it); this module adds what Serve does not do for an in-flight call: when the
replica dies mid-call (``ActorDiedError``) or the engine reports a retryable failure, the call is
sent again under the model's retry policy (``cluster/retry.py``, the one place that decides) —
Serve's router has by then dropped the dead replica, so it lands on another one. When the tries run
out the caller gets ``NoHealthyReplica``. A stream is retried only while it has produced nothing.

The router is picklable: it carries the specs and the application name, and builds its handles
lazily in whatever process uses it (a worker actor, a Serve replica, the driver).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

from conclave.cluster.config import ModelSpec
from conclave.cluster.deployment import APP_NAME, INDEX_NAME, RoutedRequest, deployment_name
from conclave.cluster.retry import RetryPolicy, retry_call, retry_stream
from conclave.schema.chat import ChatChunk, ChatRequest, ChatResponse, ModelNotFound

__all__ = ["ServeRouter"]


class ServeRouter:
    """Reach the models of a deployed models application by name.

    ``specs`` are the served models (as returned by ``deploy_models``); use ``connect`` to read them
    from the running application instead. Each model's calls are retried under its spec's ``retry``
    policy; ``retry`` given here replaces it for every model (operators, tests).
    """

    def __init__(
        self,
        specs: Iterable[ModelSpec | Mapping[str, Any]],
        *,
        app_name: str = APP_NAME,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.specs = {
            s.name: s for s in (s if isinstance(s, ModelSpec) else ModelSpec.model_validate(s) for s in specs)
        }
        self.app_name = app_name
        self.retry = retry
        self._handles: dict[str, DeploymentHandle[Any]] = {}
        #: Calls sent again after a replica failure, in this process (for metrics and tests).
        self.retries = 0

    @classmethod
    async def connect(cls, app_name: str = APP_NAME, **kwargs: Any) -> ServeRouter:
        """A router for whatever the running ``app_name`` application serves (asks its index)."""
        index = serve.get_deployment_handle(INDEX_NAME, app_name=app_name)
        specs = await index.models.remote()
        return cls(specs, app_name=app_name, **kwargs)

    # -- pickling: handles are rebuilt in the receiving process -------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handles"] = {}
        state["retries"] = 0
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    # -- ModelRouter ----------------------------------------------------------------------------------
    def models(self) -> list[str]:
        return list(self.specs)

    def context_window(self, model: str) -> int | None:
        return self._spec(model).context_window

    def spec(self, model: str) -> ModelSpec:
        return self._spec(model)

    def handle(self, model: str) -> DeploymentHandle[Any]:
        """The deployment handle of ``model`` (created once per process)."""
        self._spec(model)
        h = self._handles.get(model)
        if h is None:
            h = serve.get_deployment_handle(deployment_name(model), app_name=self.app_name, _check_exists=False)
            self._handles[model] = h
        return h

    def policy(self, model: str) -> RetryPolicy:
        """How calls to ``model`` are retried."""
        return self.retry or self._spec(model).retry

    def _retried(self) -> None:
        self.retries += 1

    async def chat(self, model: str, request: ChatRequest) -> ChatResponse:
        handle = self.handle(model)
        routed = RoutedRequest.of(request)

        async def once() -> ChatResponse:
            response: ChatResponse = await handle.chat.remote(routed)
            return response

        return await retry_call(self.policy(model), model, once, on_retry=self._retried)

    async def stream(self, model: str, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        handle = self.handle(model).options(stream=True)
        routed = RoutedRequest.of(request)

        def open_stream() -> AsyncIterator[ChatChunk]:
            gen: DeploymentResponseGenerator[ChatChunk] = handle.stream.remote(routed)  # type: ignore[assignment]
            return gen

        def cancel(gen: AsyncIterator[ChatChunk]) -> None:
            if isinstance(gen, DeploymentResponseGenerator):
                gen.cancel()  # type: ignore[no-untyped-call]

        async for chunk in retry_stream(self.policy(model), model, open_stream, on_retry=self._retried, cancel=cancel):
            yield chunk

    async def whoami(self, model: str) -> dict[str, Any]:
        """Which replica a call lands on (for operators and tests)."""
        info: dict[str, Any] = await self.handle(model).whoami.remote()
        return info

    # -- helpers --------------------------------------------------------------------------------------
    def _spec(self, model: str) -> ModelSpec:
        try:
            return self.specs[model]
        except KeyError:
            raise ModelNotFound(model, list(self.specs)) from None
