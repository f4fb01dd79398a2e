"""The vLLM engine's options and their translation to vLLM and Serve, checked without vLLM."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from conclave.cluster.config import ModelSpec
from conclave.cluster.deployment import _serve_options
from conclave.cluster.engines import build_engine
from conclave.cluster.engines.vllm import VllmOptions, serve_options, vllm_available
from conclave.schema.chat import EngineError


def test_engine_args_defaults_turn_prefix_caching_on() -> None:
    args = VllmOptions(model="Qwen/Qwen2.5-0.5B-Instruct").engine_args()
    assert args["enable_prefix_caching"] is True
    assert args["tensor_parallel_size"] == 1
    assert "distributed_executor_backend" not in args
    assert "max_model_len" not in args


def test_engine_args_tensor_parallel_uses_ray_and_passes_extras() -> None:
    o = VllmOptions(model="m", tensor_parallel_size=4, max_model_len=8192, engine_kwargs={"enforce_eager": True})
    args = o.engine_args()
    assert args["tensor_parallel_size"] == 4 and args["max_model_len"] == 8192
    assert args["distributed_executor_backend"] == "ray" and args["enforce_eager"] is True


def test_engine_kwargs_cannot_shadow_options() -> None:
    with pytest.raises(ValidationError, match="engine_kwargs must not set tensor_parallel_size"):
        VllmOptions(model="m", engine_kwargs={"tensor_parallel_size": 2})


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"model": ""}, "model"),
        ({"model": "m", "gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ({"model": "m", "dtype": "int3"}, "dtype"),
        ({"model": "m", "tensor_parallel_size": 0}, "tensor_parallel_size"),
        ({"model": "m", "bogus": 1}, "bogus"),
    ],
)
def test_bad_options_name_the_field(options: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as e:
        ModelSpec(name="g", engine="vllm", options=options)
    assert field in str(e.value)


def test_serve_options_one_gpu() -> None:
    spec = ModelSpec(name="g", engine="vllm", options={"model": "m"})
    assert serve_options(spec) == {"ray_actor_options": {"num_cpus": 1.0, "num_gpus": 1}}
    assert _serve_options(spec)["ray_actor_options"]["num_gpus"] == 1


def test_serve_options_tensor_parallel_uses_a_placement_group() -> None:
    spec = ModelSpec(name="g", engine="vllm", options={"model": "m", "tensor_parallel_size": 2}, replicas=3)
    opts = _serve_options(spec)
    assert opts["placement_group_bundles"] == [{"CPU": 1.0}, {"GPU": 1}, {"GPU": 1}]
    assert opts["placement_group_strategy"] == "STRICT_PACK"
    assert opts["ray_actor_options"]["num_gpus"] == 0 and opts["num_replicas"] == 3


def test_serve_options_reject_disagreeing_gpu_counts() -> None:
    spec = ModelSpec(name="g", engine="vllm", options={"model": "m", "tensor_parallel_size": 2}, num_gpus=4)
    with pytest.raises(ValueError, match="tensor_parallel_size"):
        serve_options(spec)


@pytest.mark.skipif(vllm_available(), reason="checks the message shown when vLLM is absent")
def test_building_without_vllm_says_how_to_install() -> None:
    with pytest.raises(EngineError, match=r"conclave\[gpu\]"):
        build_engine(ModelSpec(name="g", engine="vllm", options={"model": "m"}))
