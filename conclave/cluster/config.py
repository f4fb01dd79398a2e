"""Model declarations: what ``conclave.toml`` says about each served model.

A ``ModelSpec`` is everything needed to deploy one model as a Ray Serve deployment: the engine and
its options (validated by the engine's own options model), replicas or autoscaling bounds, the
per-replica resources, how a failed call is retried across replicas, and the price used by the
budget ledger.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from conclave.cluster.engines.registry import ENGINE_NAMES, EngineName, options_model
from conclave.cluster.retry import RetryPolicy
from conclave.schema.budget import Price

__all__ = ["Autoscaling", "EngineName", "ModelSpec", "Price", "RetryPolicy", "ENGINE_NAMES", "unique_names"]

logger = logging.getLogger(__name__)

#: Retry options ``openai_http`` once had → the ``RetryPolicy`` field each now is.
_LEGACY_RETRY = {"max_retries": "attempts", "backoff_s": "backoff_s", "max_retry_after_s": "max_retry_after_s"}


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
    retry: RetryPolicy = Field(
        default_factory=RetryPolicy, description="How a call is retried across replicas when a try fails."
    )
    description: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _engine_retries(cls, data: Any) -> Any:
        """``openai_http`` options once retried inside the engine (``max_retries``, ``backoff_s``,
        ``max_retry_after_s``); the router retries now, so a config that still sets them has them
        read as the model's ``retry`` (``attempts = max_retries + 1``) unless it gives ``retry``."""
        if not isinstance(data, dict) or data.get("engine") != "openai_http":
            return data
        options = data.get("options")
        if not isinstance(options, dict) or not _LEGACY_RETRY.keys() & options.keys():
            return data
        legacy = {k: options[k] for k in _LEGACY_RETRY if k in options}
        data = {**data, "options": {k: v for k, v in options.items() if k not in _LEGACY_RETRY}}
        if "retry" in data:
            logger.warning("model %s: options %s ignored; retry is given", data.get("name"), ", ".join(legacy))
            return data
        retry = {_LEGACY_RETRY[k]: v for k, v in legacy.items()}
        if "attempts" in retry and isinstance(retry["attempts"], int):
            retry["attempts"] += 1
        logger.warning(
            "model %s: options %s are read as retry %s (the router retries, not the engine)",
            data.get("name"),
            ", ".join(legacy),
            retry,
        )
        return {**data, "retry": retry}

    @field_validator("options")
    @classmethod
    def _options_valid(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """Checked by the engine's own options model (no model is loaded), so a mistake is
        reported as ``options.<field>``."""
        engine = info.data.get("engine")
        if engine is None:  # the engine itself was invalid; that error is reported already
            return v
        return options_model(engine).model_validate(v).model_dump(exclude_unset=True)

    def parsed_options(self) -> BaseModel:
        return options_model(self.engine).model_validate(self.options)


def unique_names(specs: list[ModelSpec]) -> list[ModelSpec]:
    """``specs`` when no two share a name (a field validator for lists of models), else ``ValueError``."""
    names = [m.name for m in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"model names must be unique; repeated: {', '.join(dup)}")
    return specs
