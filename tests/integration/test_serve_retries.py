"""One retry policy on the production path: a model served by Ray Serve whose endpoint fails is tried
exactly as often as its policy says — the engine in the replica does not retry underneath the router
(before, 3 router attempts × 4 engine tries made 12) — and a request the endpoint rejects is tried once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ray import serve

from conclave.cluster.config import ModelSpec
from conclave.cluster.deployment import deploy_models
from conclave.cluster.pool import ServeRouter
from conclave.controller.redis_server import free_port
from conclave.schema.chat import ChatRequest, EngineError, NoHealthyReplica

from ..unit._cluster_http import Flaky, serve_http

APP = "models-retries"


@pytest.fixture(scope="module")
def endpoint(ray_cluster: None) -> Iterator[tuple[Flaky, ServeRouter]]:
    flaky = Flaky(fail=10**6, status=503, retry_after=None)
    with serve_http(flaky.app) as url:
        serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
        spec = ModelSpec(
            name="flaky",
            engine="openai_http",
            num_cpus=0,
            options={"base_url": f"{url}/v1"},
            retry={"attempts": 3, "backoff_s": 0},
        )
        specs = deploy_models([spec], app_name=APP)
        try:
            yield flaky, ServeRouter(specs, app_name=APP)
        finally:
            serve.delete(APP)


def _req() -> ChatRequest:
    return ChatRequest.model_validate({"messages": [{"role": "user", "content": "hello"}]})


async def test_a_failing_endpoint_is_tried_as_often_as_the_policy_says(endpoint: tuple[Flaky, ServeRouter]) -> None:
    flaky, router = endpoint
    flaky.calls, flaky.status = 0, 503
    with pytest.raises(NoHealthyReplica, match="3 attempts failed") as e:
        await router.chat("flaky", _req())
    assert flaky.calls == 3 and router.retries == 2
    assert "answered 503: slow down" in str(e.value)


async def test_a_rejected_request_is_tried_once(endpoint: tuple[Flaky, ServeRouter]) -> None:
    flaky, router = endpoint
    flaky.calls, flaky.status = 0, 422
    with pytest.raises(EngineError) as e:
        await router.chat("flaky", _req())
    assert flaky.calls == 1
    assert e.value.status == 422 and not e.value.retryable and not isinstance(e.value, NoHealthyReplica)
