"""Settings: ``conclave.toml`` plus ``CONCLAVE_*`` environment variables.

Precedence, highest first: explicit arguments (CLI flags), environment variables, the TOML file
(``--config``, ``$CONCLAVE_CONFIG``, ``./conclave.toml``, ``~/.conclave/conclave.toml``), defaults.
A bad value is a ``ConfigError`` naming the file, the field and what was expected.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from conclave.budgets.pricing import Pricing
from conclave.cluster.config import ModelSpec
from conclave.core.paths import default_home
from conclave.schema.errors import format_validation_error
from conclave.tools.settings import ToolSettings

__all__ = [
    "ConfigError",
    "MetricsSettings",
    "ScheduleSettings",
    "Settings",
    "WebhookSettings",
    "default_home",
    "load_settings",
]


class ConfigError(ValueError):
    """A configuration value is wrong; the message names where and what."""


class WebhookSettings(BaseModel):
    """``[webhooks]``: where deliveries may go, and how hard each one is tried.

    Destinations obey ``fetch_url``'s address rules: private, loopback and link-local addresses are
    refused (at submission, and again before every attempt) unless ``allow_private`` is set or the
    host is on ``allow_hosts``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Run a dispatcher in every worker.")
    allow_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts (exact, or '.example.com' for subdomains) that may be private or loopback.",
    )
    deny_hosts: list[str] = Field(default_factory=list, description="Hosts never delivered to.")
    allow_private: bool = Field(default=False, description="Allow private, loopback and link-local addresses.")
    timeout_s: float = Field(default=10.0, gt=0, le=300, description="Time limit of one attempt.")
    concurrency: int = Field(default=32, ge=1, le=10_000, description="Deliveries one worker makes at once.")
    retry_window_s: float = Field(
        default=6 * 3600.0, gt=0, description="Retry a delivery this long after its first attempt, then dead-letter it."
    )
    backoff_initial_s: float = Field(default=1.0, gt=0, description="Wait before the first retry; doubles after.")
    backoff_max_s: float = Field(default=600.0, gt=0, description="Longest wait between two attempts.")
    lease_s: float = Field(default=60.0, gt=0, description="A delivery whose worker stops renewing it is taken over.")
    secret_grace_s: float = Field(
        default=86_400.0, ge=0, description="After a rotation, the previous secret also signs for this long."
    )
    keep_deliveries_s: float = Field(
        default=7 * 86_400.0, gt=0, description="Ended delivery records are kept this long."
    )
    max_subscriptions: int = Field(default=20, ge=1, le=1_000, description="Subscriptions per tenant.")


class ScheduleSettings(BaseModel):
    """``[schedules]``: the scheduler loop every worker runs (a Redis claim makes each tick run once)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Tick schedules in every worker.")
    poll_s: float = Field(default=0.25, gt=0, le=60, description="How often a worker looks for due schedules.")
    grace_s: float = Field(
        default=60.0, gt=0, description="A tick found later than this is missed (then the schedule's policy applies)."
    )
    stale_claim_s: float = Field(
        default=30.0, gt=0, description="A tick claimed this long ago without a run is finished by another worker."
    )
    max_per_tenant: int = Field(default=100, ge=1, le=100_000, description="Schedules per tenant.")


class MetricsSettings(BaseModel):
    """``[metrics]``: Prometheus metrics (``/metrics`` on the API; a listener in each worker)."""

    model_config = ConfigDict(extra="forbid")

    worker_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Port of each worker's /metrics listener (CONCLAVE_METRICS_PORT); unset = none. A port "
        "already taken (several workers on one host) makes the worker try the next ones, up to port_span.",
    )
    port_span: int = Field(default=8, ge=1, le=256, description="Ports tried from worker_port on.")
    token: SecretStr | None = Field(
        default=None,
        description="A bearer token that may read the API's /metrics when auth is on (CONCLAVE_METRICS_TOKEN); "
        "admin keys may too. Give it to Prometheus instead of an admin key.",
    )
    host: str = Field(default="0.0.0.0", description="Address the worker listener binds.")
    max_tenants: int = Field(
        default=50,
        ge=0,
        le=10_000,
        description="Tenants that get a label of their own in a process; the rest are counted as '_other'.",
    )


class Settings(BaseModel):
    """Everything a Conclave process needs to know about its deployment."""

    model_config = ConfigDict(extra="forbid")

    home: Path = Field(default_factory=default_home, description="State directory (embedded Redis data).")
    redis_url: str | None = Field(
        default=None, description="External Redis/Valkey URL; unset = start the bundled Valkey."
    )
    redis_port: int = Field(default=6390, ge=1, le=65535, description="Port of the bundled Valkey.")
    key_prefix: str = Field(default="cv", min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_\-]+$")
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=2, ge=1, le=256, description="Worker actors.")
    worker_concurrency: int = Field(default=64, ge=1, le=100_000, description="Runs per worker at once.")
    lease_seconds: float = Field(default=15.0, gt=0, description="A worker's hold on a run.")
    max_attempts: int = Field(default=3, ge=1, description="Crashes before a run is dead-lettered.")
    auth: bool = Field(default=False, description="Require API keys.")
    retention_days: float | None = Field(
        default=30.0,
        ge=0,
        description="Days a finished run is kept before it is deleted (0 or unset: for ever); tenants may override.",
    )
    admin_key: SecretStr | None = Field(
        default=None, description="Bootstrap admin secret (CONCLAVE_ADMIN_KEY): may create the first keys."
    )
    default_model: str | None = Field(default=None, description="Model used when a task names none.")
    models: list[ModelSpec] = Field(default_factory=list, description="Served models; empty = the CPU default.")
    tools: ToolSettings = Field(
        default_factory=ToolSettings, description="Tool limits, search corpora, MCP servers, prices."
    )
    ensembles_dir: Path | None = Field(default=None, description="Extra ensemble configs to load by name.")
    ray_address: str | None = Field(default=None, description="Join this Ray cluster instead of starting one.")
    kinds: dict[str, str] = Field(
        default_factory=dict, description="Extra run kinds: name → module exposing KIND (a RunKind)."
    )
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings, description="Webhook deliveries.")
    schedules: ScheduleSettings = Field(default_factory=ScheduleSettings, description="Scheduled runs.")
    metrics: MetricsSettings = Field(default_factory=MetricsSettings, description="Prometheus metrics.")

    @field_validator("kinds", mode="before")
    @classmethod
    def _kinds_from_env(cls, v: Any) -> Any:
        """``CONCLAVE_KINDS=name=module,other=module2`` in the environment."""
        if isinstance(v, str):
            out = {}
            for part in filter(None, (p.strip() for p in v.split(","))):
                name, sep, module = part.partition("=")
                if not sep or not name or not module:
                    raise ValueError(f"expected name=module, got {part!r}")
                out[name.strip()] = module.strip()
            return out
        return v

    @field_validator("models")
    @classmethod
    def _unique_names(cls, v: list[ModelSpec]) -> list[ModelSpec]:
        names = [m.name for m in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"model names must be unique; repeated: {', '.join(dup)}")
        return v

    @property
    def data_dir(self) -> Path:
        return self.home / "valkey"

    def model_names(self) -> list[str]:
        return [m.name for m in self.models]

    def pricing(self) -> Pricing:
        """Token prices of the served models and call prices of the tools."""
        return Pricing({m.name: m.price for m in self.models}, self.tools.prices)

    def resolved_default_model(self) -> str | None:
        if self.default_model:
            return self.default_model
        return self.models[0].name if self.models else None


_ENV = {
    "CONCLAVE_HOME": "home",
    "CONCLAVE_REDIS_URL": "redis_url",
    "CONCLAVE_REDIS_PORT": "redis_port",
    "CONCLAVE_KEY_PREFIX": "key_prefix",
    "CONCLAVE_API_HOST": "api_host",
    "CONCLAVE_API_PORT": "api_port",
    "CONCLAVE_WORKERS": "workers",
    "CONCLAVE_WORKER_CONCURRENCY": "worker_concurrency",
    "CONCLAVE_LEASE_SECONDS": "lease_seconds",
    "CONCLAVE_MAX_ATTEMPTS": "max_attempts",
    "CONCLAVE_AUTH": "auth",
    "CONCLAVE_ADMIN_KEY": "admin_key",
    "CONCLAVE_RETENTION_DAYS": "retention_days",
    "CONCLAVE_DEFAULT_MODEL": "default_model",
    "CONCLAVE_RAY_ADDRESS": "ray_address",
    "CONCLAVE_KINDS": "kinds",
}


def _config_path(explicit: str | os.PathLike[str] | None) -> Path | None:
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        return p
    env = os.environ.get("CONCLAVE_CONFIG")
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise ConfigError(f"CONCLAVE_CONFIG points to {p}, which does not exist")
        return p
    for candidate in (Path.cwd() / "conclave.toml", default_home() / "conclave.toml"):
        if candidate.is_file():
            return candidate
    return None


def load_settings(config: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read settings from file and environment; ``overrides`` (non-None values) win over both."""
    data: dict[str, Any] = {}
    path = _config_path(config)
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
    for env, field in _ENV.items():
        if env in os.environ and os.environ[env] != "":
            data[field] = os.environ[env]
    for env, field in (("CONCLAVE_METRICS_PORT", "worker_port"), ("CONCLAVE_METRICS_TOKEN", "token")):
        if os.environ.get(env):
            data["metrics"] = {**(data.get("metrics") or {}), field: os.environ[env]}
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        settings = Settings.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, str(path) if path else "settings")) from None
    if not settings.models:
        settings.models = [default_cpu_model()]
    names = settings.model_names()
    if settings.default_model and settings.default_model not in names:
        raise ConfigError(
            f"default_model: {settings.default_model!r} is not one of the configured models ({', '.join(names)})"
        )
    return settings


def default_cpu_model() -> ModelSpec:
    """The model served when ``conclave.toml`` declares none: SmolLM2-135M-Instruct on the CPU."""
    from conclave.cluster.defaults import default_model_spec

    return default_model_spec()
