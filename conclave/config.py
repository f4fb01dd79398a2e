"""Settings: ``conclave.toml`` plus ``CONCLAVE_*`` environment variables, with pydantic-settings.

Precedence, highest first: explicit arguments (CLI flags), environment variables (``CONCLAVE_`` and
the field's name: ``CONCLAVE_WORKERS=4``; a list or table as JSON, ``CONCLAVE_KINDS`` also as
``name=module,other=module2``; ``CONCLAVE_METRICS_PORT`` and ``CONCLAVE_METRICS_TOKEN`` set one field of
``[metrics]`` each), the TOML file (the first of ``--config``, ``$CONCLAVE_CONFIG``,
``./conclave.toml``, ``~/.conclave/conclave.toml``), defaults. ``load_settings`` reads all of them;
``Settings(...)`` alone reads its arguments and the environment, no file; ``Settings.model_validate``
reads nothing else (that is how settings travel to Ray actors: ``model_dump`` → ``model_validate``).
A bad value is a ``ConfigError`` naming where it came from (the file or the variable), the field and
what was expected.
"""

from __future__ import annotations

import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from conclave.budgets.pricing import Pricing
from conclave.cluster.config import ModelSpec, unique_names
from conclave.core.paths import default_home
from conclave.schema.errors import field_problems, format_problems
from conclave.tools.settings import ToolSettings

__all__ = [
    "ConfigError",
    "EnsembleCeiling",
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


class EnsembleCeiling(BaseModel):
    """The most one ``model="ensemble/<name>"`` request on the OpenAI endpoint may spend; a request
    whose worst case (from the ensemble's call plan and its ``max_tokens``) is larger is refused."""

    model_config = ConfigDict(extra="forbid")

    model_calls: int = Field(default=64, ge=1, description="Model requests one ensemble request may make.")
    output_tokens: int = Field(
        default=65_536, ge=1, description="Output tokens all the calls of one ensemble request may write together."
    )


#: The TOML file ``load_settings`` is reading, for ``Settings.settings_customise_sources``.
_TOML_FILE: ContextVar[Path | None] = ContextVar("conclave_toml_file", default=None)

ENV_PREFIX = "CONCLAVE_"

#: Variables that set one field of a section; ``CONCLAVE_<SECTION>`` itself takes the whole section as JSON.
SECTION_ENV: dict[str, tuple[str, str]] = {
    "CONCLAVE_METRICS_PORT": ("metrics", "worker_port"),
    "CONCLAVE_METRICS_TOKEN": ("metrics", "token"),
}


class _SectionEnv(PydanticBaseSettingsSource):
    """``SECTION_ENV``'s variables as ``{section: {field: value}}``: what deployments (the chart's pods)
    set for one field, without writing the whole section as JSON. pydantic-settings merges it into the
    section the other sources give, field by field."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything is in __call__: the values are nested

    def __call__(self) -> dict[str, Any]:
        out: dict[str, dict[str, str]] = {}
        for env, (section, field) in SECTION_ENV.items():
            value = os.environ.get(env)
            if value:
                out.setdefault(section, {})[field] = value
        return out


class Settings(BaseSettings):
    """Everything a Conclave process needs to know about its deployment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", env_ignore_empty=True)

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
    ensemble_ceiling: EnsembleCeiling = Field(
        default_factory=EnsembleCeiling, description="Per-request ceiling of ensembles on the OpenAI endpoint."
    )
    ray_address: str | None = Field(default=None, description="Join this Ray cluster instead of starting one.")
    kinds: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, description="Extra run kinds: name → module exposing KIND (a RunKind)."
    )
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings, description="Webhook deliveries.")
    schedules: ScheduleSettings = Field(default_factory=ScheduleSettings, description="Scheduled runs.")
    metrics: MetricsSettings = Field(default_factory=MetricsSettings, description="Prometheus metrics.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the one-field variables (``CONCLAVE_METRICS_PORT``), then ``CONCLAVE_*``, then
        the TOML file ``load_settings`` found (no ``.env``)."""
        env = (init_settings, _SectionEnv(settings_cls), env_settings)
        path = _TOML_FILE.get()
        if path is None:
            return env
        return (*env, TomlConfigSettingsSource(settings_cls, toml_file=path))

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
        return unique_names(v)

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


def _env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def _env_source(field: str) -> str | None:
    """The variable a bad value at ``field`` (dotted) came from, if one set it."""
    section, _, rest = field.partition(".")
    for env, (sec, name) in SECTION_ENV.items():
        if sec == section and rest.split(".", 1)[0] == name and os.environ.get(env):
            return env
    return _env_name(section) if os.environ.get(_env_name(section)) else None


def _invalid(err: ValidationError, path: Path | None, overrides: dict[str, Any]) -> ConfigError:
    """One line per problem, each naming where the bad value came from: an argument, a variable, the file."""
    lines = []
    for problem in field_problems(err):
        top = problem.field.split(".", 1)[0]
        if top in overrides:
            source = "arguments"
        else:
            source = _env_source(problem.field) or (str(path) if path else "settings")
        lines.append(format_problems([problem], source))
    return ConfigError("\n".join(lines))


def load_settings(config: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read settings from file and environment; ``overrides`` (non-None values) win over both."""
    path = _config_path(config)
    given = {k: v for k, v in overrides.items() if v is not None}
    token = _TOML_FILE.set(path)
    try:
        settings = Settings(**given)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except SettingsError as e:  # a variable holding a list or table that is not JSON
        raise ConfigError(f"environment: {e} (a list or table is given as JSON)") from None
    except ValidationError as e:
        raise _invalid(e, path, given) from None
    finally:
        _TOML_FILE.reset(token)
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
