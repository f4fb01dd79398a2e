"""With no tracer provider installed (the default), spans are skipped entirely; once a provider is
installed, the next run's check turns them on. In a fresh interpreter: the global provider can be
set only once per process, and another test may have set it in this one."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

_SCRIPT = textwrap.dedent(
    """
    from opentelemetry import context, trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from conclave.core import telemetry

    telemetry.setup_telemetry("test")  # no OTEL_* environment: tracing stays off
    before = context.get_current()
    with telemetry.agent_span("a") as agent, telemetry.model_span("m", "p", max_tokens=8) as span:
        assert agent is trace.INVALID_SPAN and span is trace.INVALID_SPAN, (agent, span)
        assert context.get_current() is before, "a span attached an OpenTelemetry context while tracing is off"
        telemetry.record_usage(span, "m", 1, 2, ["stop"], 0.0)
    with telemetry.tool_span("t") as tool:
        assert tool is trace.INVALID_SPAN

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    with telemetry.agent_span("a"):  # once per run: sees the provider
        with telemetry.model_span("m", "p", max_tokens=8) as span:
            telemetry.record_usage(span, "m", 1, 2, ["stop"], 0.0)
        with telemetry.tool_span("t"):
            pass
    names = sorted(s.name for s in exporter.get_finished_spans())
    assert names == ["chat m", "execute_tool t", "invoke_agent a"], names
    print("ok")
    """
)


def test_spans_are_skipped_without_a_tracer_provider_and_recorded_once_one_is_installed() -> None:
    root = Path(__file__).resolve().parents[2]
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, cwd=root, timeout=120
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_a_kept_metric_child_is_the_one_labels_gives_and_counts_there() -> None:
    from prometheus_client import CollectorRegistry, Counter

    from conclave.core.metrics import child

    c = Counter("conclave_test_kept_children", "test", ["tenant", "model"], registry=CollectorRegistry())
    child(c, tenant="t", model="m").inc(2)
    child(c, tenant="t", model="m").inc(3)
    child(c, tenant="u", model="m").inc(1)
    assert c.labels(tenant="t", model="m")._value.get() == 5
    assert c.labels(tenant="u", model="m")._value.get() == 1


def test_metric_children_passed_in_another_order_are_not_mixed_up() -> None:
    from prometheus_client import CollectorRegistry, Counter

    from conclave.core.metrics import child

    c = Counter("conclave_test_child_order", "test", ["a", "b"], registry=CollectorRegistry())
    child(c, a="x", b="y").inc(1)
    child(c, b="x", a="y").inc(10)  # the same values in the same order, other labels
    assert c.labels(a="x", b="y")._value.get() == 1
    assert c.labels(a="y", b="x")._value.get() == 10
