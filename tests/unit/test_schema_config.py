"""Bad input is rejected with a message naming the field: task specs, budgets, settings."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from conclave.budgets.caps import compute_caps
from conclave.budgets.pricing import Pricing
from conclave.cluster.config import ModelSpec
from conclave.config import ConfigError, load_settings
from conclave.core.kinds import SpecError, validate_spec
from conclave.core.money import to_pico
from conclave.schema import Budget, Cost, TaskSpec
from conclave.schema.budget import Price


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
