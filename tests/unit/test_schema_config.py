"""Bad input is rejected with a message naming the field: task specs, budgets, settings."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from conclave.budgets.caps import compute_caps
from conclave.budgets.pricing import Pricing
from conclave.cluster.config import ModelSpec
from conclave.config import ConfigError, Settings, load_settings
from conclave.core.kinds import SpecError, validate_spec
from conclave.schema import Budget, BudgetLimits, Cost, ScopeBudget, TaskSpec, field_problems
from conclave.schema.budget import Price
from conclave.schema.money import MAX_USD, PICO, to_pico


def _msg(e: pytest.ExceptionInfo[ValidationError]) -> str:
    return str(e.value)


def test_unknown_task_field_is_named() -> None:
    with pytest.raises(ValidationError) as e:
        TaskSpec.model_validate({"kind": "chat", "input": "x", "budgte": {}})
    assert "budgte" in _msg(e) and "Extra inputs are not permitted" in _msg(e)


@pytest.mark.parametrize(
    ("budget", "needle"),
    [
        ({"usd": -1}, "usd"),
        ({"usd": math.nan}, "usd"),
        ({"output_tokens": -5}, "output_tokens"),
        ({"currency": "EUR"}, "currency"),
        ({"dollars": 3}, "dollars"),
        ({"usd": 1, "scopes": {"a": {"share": 0.7}, "b": {"share": 0.5}}}, "share"),
        ({"output_tokens": 10, "scopes": {"a": {"output_tokens": 20}}}, "output_tokens"),
    ],
)
def test_bad_budgets_are_rejected_with_the_field(budget: dict, needle: str) -> None:
    with pytest.raises(ValidationError) as e:
        Budget.model_validate(budget)
    assert needle in _msg(e)


def test_caps_follow_shares_and_explicit_limits() -> None:
    b = Budget(
        usd=1.0, output_tokens=1000, scopes={"gather": {"share": 0.7}, "write": {"share": 0.3, "output_tokens": 100}}
    )
    caps = compute_caps(b)
    assert caps["run|output_tokens"] == 1000
    assert caps["run/gather|output_tokens"] == 700
    assert caps["run/write|output_tokens"] == 100
    assert caps["run/gather|usd"] == to_pico(0.7)


def test_pricing_is_exact_in_picodollars() -> None:
    p = Pricing({"m": Price(input=3.0, output=15.0, cached_input=0.3)}, {"search": 0.001})
    assert p.model_cost("m", 1_000_000, 0) == to_pico(3.0)
    assert p.model_cost("m", 0, 1_000) == to_pico(0.015)
    assert p.model_cost("m", 1_000_000, 0, cached_tokens=1_000_000) == to_pico(0.3)
    assert p.tool_cost("search") == to_pico(0.001) and p.tool_cost("other") == 0


def test_unknown_kind_and_options_are_spec_errors() -> None:
    with pytest.raises(SpecError) as e:
        validate_spec(TaskSpec(kind="nope", input="x"))
    assert e.value.field == "kind" and "chat" in e.value.message
    with pytest.raises(SpecError) as e:
        validate_spec(TaskSpec(kind="chat", input="x", options={"max_tokens": 0}))
    assert e.value.field == "options.max_tokens"
    with pytest.raises(SpecError) as e:
        validate_spec(TaskSpec(kind="chat", input="x", model="ghost"), ["sim"])
    assert e.value.field == "model" and "sim" in e.value.message


def test_config_file_errors_name_file_and_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONCLAVE_CONFIG", raising=False)
    cfg = tmp_path / "conclave.toml"
    cfg.write_text('workers = 0\n[[models]]\nname = "m"\nengine = "sim"\n')
    with pytest.raises(ConfigError) as e:
        load_settings(cfg)
    assert "workers" in str(e.value) and str(cfg) in str(e.value)
    cfg.write_text("workers = [\n")
    with pytest.raises(ConfigError) as e:
        load_settings(cfg)
    assert "not valid TOML" in str(e.value)
    cfg.write_text('[[models]]\nname = "m"\nengine = "warp"\n')
    with pytest.raises(ConfigError) as e:
        load_settings(cfg)
    assert "engine" in str(e.value)


def test_env_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "conclave.toml"
    cfg.write_text('workers = 3\n[[models]]\nname = "m"\nengine = "sim"\n')
    monkeypatch.setenv("CONCLAVE_WORKERS", "5")
    monkeypatch.setenv("CONCLAVE_KINDS", "x=mod.a:K, y=mod.b")
    s = load_settings(cfg)
    assert s.workers == 5 and s.kinds == {"x": "mod.a:K", "y": "mod.b"}
    monkeypatch.setenv("CONCLAVE_KINDS", "broken")
    with pytest.raises(ConfigError) as e:
        load_settings(cfg)
    assert "name=module" in str(e.value)


def _toml(path: Path, workers: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'workers = {workers}\n[[models]]\nname = "m"\nengine = "sim"\n')
    return path


def test_the_first_config_file_found_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--config``, then ``$CONCLAVE_CONFIG``, then ``./conclave.toml``, then ``~/.conclave/conclave.toml``."""
    for var in ("CONCLAVE_CONFIG", "CONCLAVE_WORKERS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CONCLAVE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    _toml(tmp_path / "home" / "conclave.toml", 4)
    assert load_settings().workers == 4
    _toml(tmp_path / "conclave.toml", 5)
    assert load_settings().workers == 5
    monkeypatch.setenv("CONCLAVE_CONFIG", str(_toml(tmp_path / "env.toml", 6)))
    assert load_settings().workers == 6
    assert load_settings(_toml(tmp_path / "flag.toml", 7)).workers == 7
    monkeypatch.setenv("CONCLAVE_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="CONCLAVE_CONFIG points to"):
        load_settings()


def test_arguments_beat_environment_beats_file_beats_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "conclave.toml"
    cfg.write_text('workers = 3\nkey_prefix = "file"\napi_port = 9001\n[[models]]\nname = "m"\nengine = "sim"\n')
    monkeypatch.setenv("CONCLAVE_WORKERS", "5")
    monkeypatch.setenv("CONCLAVE_KEY_PREFIX", "env")
    monkeypatch.setenv("CONCLAVE_API_HOST", "")  # empty is unset, as before
    monkeypatch.setenv("CONCLAVE_LOG_LEVEL", "DEBUG")  # a CONCLAVE_ variable that is no setting is no error
    s = load_settings(cfg, workers=9, api_port=None)
    assert (s.workers, s.key_prefix, s.api_port, s.api_host) == (9, "env", 9001, "127.0.0.1")
    assert s.lease_seconds == 15.0  # nobody set it: the default


def test_a_bad_value_names_the_variable_or_the_file_it_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "conclave.toml"
    cfg.write_text('api_port = 0\n[[models]]\nname = "m"\nengine = "sim"\n')
    monkeypatch.setenv("CONCLAVE_WORKERS", "0")
    with pytest.raises(ConfigError) as e:
        load_settings(cfg)
    lines = str(e.value).splitlines()
    assert any(line.startswith("CONCLAVE_WORKERS: workers:") for line in lines), lines
    assert any(line.startswith(f"{cfg}: api_port:") for line in lines), lines
    monkeypatch.delenv("CONCLAVE_WORKERS")
    monkeypatch.setenv("CONCLAVE_MODELS", "[not json")
    with pytest.raises(ConfigError, match="models"):
        load_settings(cfg)


def test_the_metrics_port_and_token_variables_each_set_one_field_of_the_metrics_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "conclave.toml"
    cfg.write_text(
        '[metrics]\nworker_port = 9100\nhost = "127.0.0.1"\nmax_tenants = 7\n[[models]]\nname = "m"\nengine = "sim"\n'
    )
    assert load_settings(cfg).metrics.worker_port == 9100
    monkeypatch.setenv("CONCLAVE_METRICS_PORT", "9200")
    monkeypatch.setenv("CONCLAVE_METRICS_TOKEN", "mtok")
    s = load_settings(cfg)
    assert s.metrics.worker_port == 9200 and s.metrics.token is not None
    assert s.metrics.token.get_secret_value() == "mtok" and "mtok" not in repr(s)
    assert (s.metrics.host, s.metrics.max_tenants) == ("127.0.0.1", 7), "the file's other fields stay"
    assert Settings().metrics.worker_port == 9200, "without a file too"
    given = load_settings(cfg, metrics={"worker_port": 9300})
    assert given.metrics.worker_port == 9300 and given.metrics.token is not None, "arguments win, field by field"
    monkeypatch.setenv("CONCLAVE_METRICS_PORT", "not-a-port")
    with pytest.raises(ConfigError) as e:
        load_settings(cfg)
    assert str(e.value).startswith("CONCLAVE_METRICS_PORT: metrics.worker_port:"), str(e.value)


def test_settings_round_trip_to_actors_without_rereading_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONCLAVE_ADMIN_KEY", "s3cret")
    monkeypatch.setenv("CONCLAVE_MODELS", '[{"name": "m", "engine": "sim"}]')
    monkeypatch.setenv("CONCLAVE_CONFIG", str(_toml(tmp_path / "c.toml", 3)))
    s = load_settings()
    assert s.models[0].name == "m" and s.workers == 3  # the variable wins over the file's models
    assert isinstance(s.admin_key, SecretStr) and s.admin_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)
    monkeypatch.setenv("CONCLAVE_WORKERS", "11")  # a replica's own environment must not change them
    back = Settings.model_validate(s.model_dump())
    assert back == s and back.workers == 3
    assert isinstance(back.admin_key, SecretStr) and back.admin_key.get_secret_value() == "s3cret"


def test_default_model_is_the_bundled_cpu_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONCLAVE_HOME", str(tmp_path))
    s = load_settings()
    assert s.models[0].engine == "llamacpp" and s.models[0].options["model_path"].endswith(".gguf")
    assert Path(s.models[0].options["model_path"]).is_file()


def test_model_spec_rejects_bad_engine_options() -> None:
    with pytest.raises(ValidationError) as e:
        ModelSpec(name="x", engine="sim", options={"mode": "telepathy"})
    assert "mode" in str(e.value)


def test_cost_round_trips_json() -> None:
    c = Cost()
    assert Cost.model_validate_json(c.model_dump_json()) == c


def test_embedded_server_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    """A killed ``conclave up`` must not leave Valkey holding the port (it did, before PDEATHSIG)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from conclave.controller.redis_server import EmbeddedRedis\n"
        f"s = EmbeddedRedis(Path({str(tmp_path)!r}))\n"
        "s.start()\n"
        "print(s.proc.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    server_pid = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    for _ in range(100):
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            return
        with open(f"/proc/{server_pid}/stat") as f:
            if f.read().split(")")[1].split()[0] == "Z":
                return
        time.sleep(0.05)
    os.kill(server_pid, signal.SIGKILL)
    raise AssertionError("the server outlived the process that started it")


@pytest.mark.parametrize(
    ("model", "data", "field"),
    [
        (BudgetLimits, {"usd": 1.8e296}, "usd"),  # schemathesis found this one: a 500 (OverflowError) before
        (ScopeBudget, {"periods": {"daily": {"usd": 1.8e296}}}, "periods.daily.usd"),
        (Budget, {"usd": 1e300}, "usd"),
        (Budget, {"scopes": {"gather": {"usd": 1e300}}}, "scopes.gather.usd"),
    ],
)
def test_a_usd_cap_past_max_usd_is_refused_naming_the_field(model: type[BaseModel], data: dict, field: str) -> None:
    with pytest.raises(ValidationError) as e:
        model.model_validate(data)
    [problem] = field_problems(e.value)
    assert problem.field == field and "less than or equal to 1000000000" in problem.message, problem


def test_the_largest_usd_cap_converts_to_exact_pico_dollars() -> None:
    assert to_pico(BudgetLimits(usd=MAX_USD).usd or 0) == int(MAX_USD) * PICO
    assert compute_caps(Budget(usd=MAX_USD))["run|usd"] == int(MAX_USD) * PICO
