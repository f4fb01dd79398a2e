"""Deployment options derived from specs, the app builder's argument checks, the router's
pickling and error types — everything about the Serve layer that needs no running cluster."""

from __future__ import annotations

import pickle

import pytest

from conclave.cluster.config import ModelSpec
from conclave.cluster.deployment import RoutedRequest, _serve_options, build_app, deployment_name
from conclave.cluster.pool import ServeRouter
from conclave.cluster.retry import RetryPolicy, retryable
from conclave.core.router import ModelRouter
from conclave.schema.chat import ChatRequest, EngineError, ModelNotFound, NoHealthyReplica

SIM = {"name": "s", "engine": "sim"}


def test_fixed_replicas_and_resources() -> None:
    spec = ModelSpec(name="s", engine="sim", replicas=3, num_cpus=0.5, max_ongoing_requests=40)
    opts = _serve_options(spec)
    assert opts["name"] == deployment_name("s") == "model.s"
    assert opts["num_replicas"] == 3 and "autoscaling_config" not in opts
    assert opts["max_ongoing_requests"] == 40
    assert opts["ray_actor_options"] == {"num_cpus": 0.5, "num_gpus": 0.0}


def test_autoscaling_replaces_replicas() -> None:
    spec = ModelSpec(name="s", engine="sim", autoscaling={"min_replicas": 0, "max_replicas": 4})
    opts = _serve_options(spec)
    assert "num_replicas" not in opts
    assert opts["autoscaling_config"] == {
        "min_replicas": 0,
        "initial_replicas": 1,
        "max_replicas": 4,
        "target_ongoing_requests": 2.0,
    }


def test_prefix_affinity_router() -> None:
    assert "request_router_config" not in _serve_options(ModelSpec(name="s", engine="sim"))
    spec = ModelSpec(name="s", engine="sim", routing="prefix_affinity")
    try:
        import ray.serve.llm.request_router  # noqa: F401  (needs ray[llm], e.g. pyarrow)
    except ImportError:
        with pytest.raises(ValueError, match=r"prefix_affinity.*ray\[llm\]"):
            _serve_options(spec)
        return
    opts = _serve_options(spec)
    assert opts["request_router_config"].request_router_class.endswith("PrefixCacheAffinityRouter")


def test_routed_request_exposes_messages_for_prefix_routing() -> None:
    req = ChatRequest.model_validate({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
    assert RoutedRequest.of(req).messages == [{"role": "user", "content": "hi"}]


def test_build_app_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="models"):
        build_app({"models": []})
    with pytest.raises(ValueError, match="repeated: s"):
        build_app({"models": [SIM, SIM]})
    with pytest.raises(ValueError, match=r"models\.0\.replicas"):
        build_app({"models": [{**SIM, "replicas": 0}]})
    with pytest.raises(ValueError, match="model: unknown field .model."):
        build_app({"models": [SIM], "model": "x"})
    app = build_app({"models": [SIM, {"name": "t", "engine": "sim"}]})
    assert app is not None


def test_router_unknown_model_and_pickling() -> None:
    router = ServeRouter([ModelSpec(name="a", engine="sim", context_window=4096), SIM])
    assert isinstance(router, ModelRouter)
    assert router.models() == ["a", "s"] and router.context_window("a") == 4096
    with pytest.raises(ModelNotFound, match="known models: a, s"):
        router.context_window("zzz")
    clone = pickle.loads(pickle.dumps(router))
    assert clone.models() == ["a", "s"] and clone._handles == {}
    assert router.policy("a") == RetryPolicy()  # the spec's, by default
    assert ServeRouter([SIM], retry=RetryPolicy(attempts=5)).policy("s").attempts == 5
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)


def test_engine_errors_survive_pickling() -> None:
    for err in (
        EngineError("x", retryable=True, status=429, retry_after_s=1.5),
        ModelNotFound("m", ["b", "a"]),
        NoHealthyReplica("m", "d"),
    ):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err)
        assert (back.retryable, back.status, back.retry_after_s) == (err.retryable, err.status, err.retry_after_s)


def test_what_the_retry_policy_retries() -> None:
    from ray.exceptions import ActorDiedError, TaskCancelledError

    assert retryable(ActorDiedError())
    assert retryable(EngineError("busy", retryable=True))
    assert retryable(ConnectionRefusedError("refused"))
    assert not retryable(EngineError("bad request", status=400))
    assert not retryable(ValueError("x"))
    assert not retryable(TaskCancelledError())


def test_engine_option_errors_are_reported_under_options() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as e:
        ModelSpec(name="m", engine="sim", options={"failure_rate": 2})
    assert e.value.errors()[0]["loc"] == ("options", "failure_rate")
