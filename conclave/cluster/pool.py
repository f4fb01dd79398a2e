"""``ServeRouter``: the production ``ModelRouter``, over Ray Serve deployment handles.

Routing among a model's replicas is Serve's (power-of-two choices by default, prefix affinity when
the spec asks for it); this module adds what Serve does not do for an in-flight call: when the
replica dies mid-call (``ActorDiedError``) or the engine reports a retryable failure, the call is
sent again — Serve's router has by then dropped the dead replica, so it lands on another one.
Attempts are bounded; when they run out the caller gets ``NoHealthyReplica``.

A stream is retried only while it has produced nothing: once chunks have reached the caller a
restart would duplicate text, so a mid-stream failure is raised as a retryable ``EngineError``.

The router is picklable: it carries the specs and the application name, and builds its handles
lazily in whatever process uses it (a worker actor, a Serve replica, the driver).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError, TaskCancelledError
from ray.serve.exceptions import DeploymentUnavailableError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

from conclave.cluster.config import ModelSpec
from conclave.cluster.deployment import APP_NAME, INDEX_NAME, RoutedRequest, deployment_name
from conclave.schema.chat import ChatChunk, ChatRequest, ChatResponse, EngineError, ModelNotFound, NoHealthyReplica

__all__ = ["ServeRouter", "replica_failure"]

logger = logging.getLogger(__name__)

_REPLICA_GONE: tuple[type[BaseException], ...] = (
    RayActorError,  # includes ActorDiedError and ActorUnavailableError
    ActorUnavailableError,
    ReplicaUnavailableError,
    DeploymentUnavailableError,
)


def replica_failure(err: BaseException) -> bool:
    """True when ``err`` means "this replica could not answer" rather than "the request is bad":
    a dead or unreachable replica, or an engine error marked retryable."""
    if isinstance(err, TaskCancelledError):
        return False
    if isinstance(err, _REPLICA_GONE):
        return True
    return isinstance(err, EngineError) and err.retryable


class ServeRouter:
    """Reach the models of a deployed models application by name.

    ``specs`` are the served models (as returned by ``deploy_models``); use ``connect`` to read them
    from the running application instead. ``max_attempts`` bounds tries per call across replicas;
    ``backoff_s`` is the first pause between tries (doubled each time, so Serve's router can learn
    of a dead replica before the next try).
    """

    def __init__(
        self,
        specs: Iterable[ModelSpec | Mapping[str, Any]],
        *,
        app_name: str = APP_NAME,
        max_attempts: int = 3,
        backoff_s: float = 0.2,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.specs = {
            s.name: s for s in (s if isinstance(s, ModelSpec) else ModelSpec.model_validate(s) for s in specs)
        }
        self.app_name = app_name
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self._handles: dict[str, DeploymentHandle] = {}
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

    def handle(self, model: str) -> DeploymentHandle:
        """The deployment handle of ``model`` (created once per process)."""
        self._spec(model)
        h = self._handles.get(model)
        if h is None:
            h = serve.get_deployment_handle(deployment_name(model), app_name=self.app_name, _check_exists=False)
            self._handles[model] = h
        return h

    async def chat(self, model: str, request: ChatRequest) -> ChatResponse:
        handle = self.handle(model)
        routed = RoutedRequest.of(request)
        last: BaseException | None = None
        for attempt in range(self.max_attempts):
            if attempt:
                self.retries += 1
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                response: ChatResponse = await handle.chat.remote(routed)
                return response
            except BaseException as e:
                if not replica_failure(e):
                    raise _unwrap(e) from None
                last = e
                logger.warning("model %s: attempt %d/%d failed: %s", model, attempt + 1, self.max_attempts, _brief(e))
        raise NoHealthyReplica(model, f"{self.max_attempts} attempts failed; last error: {_brief(last)}")

    async def stream(self, model: str, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        handle = self.handle(model).options(stream=True)
        routed = RoutedRequest.of(request)
        last: BaseException | None = None
        for attempt in range(self.max_attempts):
            if attempt:
                self.retries += 1
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            gen: DeploymentResponseGenerator[ChatChunk] = handle.stream.remote(routed)  # type: ignore[assignment]
            started = False
            try:
                async for chunk in gen:
                    started = True
                    yield chunk
                return
            except BaseException as e:
                if isinstance(e, GeneratorExit | asyncio.CancelledError):
                    gen.cancel()
                    raise
                if not replica_failure(e):
                    raise _unwrap(e) from None
                if started:
                    raise EngineError(
                        f"model {model!r}: the replica failed mid-stream ({_brief(e)}); the partial answer "
                        "was already sent, so the stream is not restarted",
                        retryable=True,
                        status=503,
                    ) from None
                last = e
                logger.warning(
                    "model %s: stream attempt %d/%d failed: %s", model, attempt + 1, self.max_attempts, _brief(e)
                )
        raise NoHealthyReplica(model, f"{self.max_attempts} attempts failed; last error: {_brief(last)}")

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


def _unwrap(err: BaseException) -> BaseException:
    """Ray raises a replica's exception as a ``RayTaskError`` that is also an instance of the
    original class; hand callers the original (with its message, not a remote traceback)."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException) and isinstance(err, type(cause)):
        return cause
    return err


def _brief(err: BaseException | None) -> str:
    if err is None:
        return "none"
    err = _unwrap(err)
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[-1] if text else ''}"[:300]
