"""Model declarations: what ``conclave.toml`` says about each served model.

A ``ModelSpec`` is everything needed to deploy one model as a Ray Serve deployment: the engine and
its options (validated by the engine's own options model), replicas or autoscaling bounds, the
per-replica resources, and the price used by the budget ledger.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from conclave.schema.budget import Price

__all__ = ["Autoscaling", "EngineName", "ModelSpec", "Price", "ENGINE_NAMES"]

EngineName = Literal["llamacpp", "openai_http", "vllm", "sim"]
ENGINE_NAMES: tuple[str, ...] = ("llamacpp", "openai_http", "vllm", "sim")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Autoscaling(_Model):
    """Ray Serve autoscaling bounds for a model's replicas."""

    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=2, ge=1)
    target_ongoing_requests: float = Field(default=2.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) is more than max_replicas ({self.max_replicas})")
        return self


class ModelSpec(_Model):
    """One served model."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$")
    engine: EngineName
    options: dict[str, Any] = Field(default_factory=dict, description="Engine options.")
    replicas: int = Field(default=1, ge=1, le=1024)
    autoscaling: Autoscaling | None = None
    max_ongoing_requests: int = Field(
        default=16,
        ge=1,
        description="Requests Serve sends one replica at once; the engine's own queue or batching "
        "limits the work, so this is set deliberately above Serve's default of 5.",
    )
    num_cpus: float = Field(default=1.0, ge=0)
    num_gpus: float = Field(default=0.0, ge=0)
    price: Price = Field(default_factory=Price)
    context_window: int | None = Field(default=None, ge=16)
    routing: Literal["power_of_two", "prefix_affinity"] = "power_of_two"
    description: str | None = None

    @field_validator("options")
    @classmethod
    def _options_valid(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """Checked by the engine's own options model (no model is loaded), so a mistake is
        reported as ``options.<field>``."""
        from conclave.cluster.engines import options_model

        engine = info.data.get("engine")
        if engine is None:  # the engine itself was invalid; that error is reported already
            return v
        return options_model(engine).model_validate(v).model_dump(exclude_unset=True)

    def parsed_options(self) -> BaseModel:
        from conclave.cluster.engines import options_model

        return options_model(self.engine).model_validate(self.options)
