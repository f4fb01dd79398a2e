"""The chart's optional monitoring: the ServiceMonitor checked against the objects it must find (the
Services it selects, their ports, the pods behind them, the token Secret), and the Grafana dashboard
checked against the metrics Conclave exports. Rendered by the real Helm engine (see test_helm_chart)."""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python as helm
import pytest
import yaml
from prometheus_client import REGISTRY

import conclave.core.metrics  # noqa: F401 - registers every instrument
from tests.unit.test_helm_chart import CHART, NAMESPACE, one, pod_templates, render, rendered, serve_config

ON = {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}, "dashboard": {"enabled": True}}}


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes LabelSelector (matchLabels, matchExpressions with In) against labels."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        assert e["operator"] == "In", e
        if labels.get(e["key"]) not in e["values"]:
            return False
    return True


def scraped_services(objects: list[dict[str, Any]]) -> list[tuple[dict[str, str], list[dict[str, Any]]]]:
    """(labels, ports) of every Service the release makes, the RayService's Serve Service included."""
    rs = one(objects, "RayService")
    out = [(rs["spec"]["serveService"]["metadata"]["labels"], rs["spec"]["serveService"]["spec"]["ports"])]
    out += [(o["metadata"]["labels"], o["spec"]["ports"]) for o in objects if o["kind"] == "Service"]
    return out


def exported_series() -> set[str]:
    """Every series name Conclave's registry can expose (counters with _total, histograms' parts)."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        if not family.name.startswith("conclave_"):
            continue
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_count", "_sum")}
        else:
            names.add(family.name)
    return names


def test_monitoring_is_off_by_default() -> None:
    kinds = [(o["kind"], o["metadata"]["name"]) for o in rendered("default")]
    assert "ServiceMonitor" not in {k for k, _ in kinds}
    assert ("ConfigMap", "conclave-dashboard") not in kinds and ("Service", "conclave-metrics") not in kinds


def test_the_service_monitor_finds_the_api_every_worker_port_and_rays_metrics() -> None:
    objects = rendered("monitoring")
    sm = one(objects, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1" and sm["metadata"]["labels"]["release"] == "kps"
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    selected = [
        (labels, ports) for labels, ports in scraped_services(objects) if matches(sm["spec"]["selector"], labels)
    ]
    assert len(selected) == 2, "the API's Serve Service and the pods' metrics Service"
    ports = {p["name"]: p for _, ps in selected for p in ps}
    endpoints = sm["spec"]["endpoints"]
    for ep in endpoints:
        assert ep["port"] in ports, f"endpoint port {ep['port']} is on no selected Service"
    assert [e["port"] for e in endpoints] == ["serve", "worker-0", "worker-1", "worker-2", "worker-3", "ray-metrics"]
    assert all(e["path"] == "/metrics" for e in endpoints if e["port"] != "ray-metrics")
    settings = serve_config("monitoring")["applications"][2]["args"]["settings"]["metrics"]
    assert [ports[f"worker-{i}"]["targetPort"] for i in range(4)] == [settings["worker_port"] + i for i in range(4)]
    assert settings["port_span"] == 4, "the workers try exactly the ports the Service exposes"
    assert ports["serve"]["targetPort"] == 8000 and ports["ray-metrics"]["targetPort"] == 8080
    metrics_svc = one(objects, "Service", "conclave-metrics")
    assert metrics_svc["spec"]["clusterIP"] == "None"
    pods = pod_templates(one(objects, "RayService"))
    assert all(
        matches({"matchLabels": metrics_svc["spec"]["selector"]}, t["metadata"]["labels"]) for t in pods.values()
    )
    redis_pod = one(objects, "StatefulSet", "conclave-redis")["spec"]["template"]["metadata"]["labels"]
    assert not matches({"matchLabels": metrics_svc["spec"]["selector"]}, redis_pod), "Redis serves no /metrics"


def _env(template: dict[str, Any], name: str) -> dict[str, Any] | None:
    for c in template["spec"]["containers"]:
        for e in c.get("env", []):
            if e["name"] == name:
                return dict(e)
    return None


def test_prometheus_and_the_api_share_the_metrics_token_secret() -> None:
    objects = rendered("monitoring")
    auth = one(objects, "ServiceMonitor")["spec"]["endpoints"][0]["authorization"]
    ref = auth["credentials"]
    assert auth["type"] == "Bearer"
    secret = one(objects, "Secret", ref["name"])
    assert ref["key"] in secret["data"] and len(secret["data"][ref["key"]]) >= 40
    for name, template in pod_templates(one(objects, "RayService")).items():
        env = _env(template, "CONCLAVE_METRICS_TOKEN")
        assert env == {"name": "CONCLAVE_METRICS_TOKEN", "valueFrom": {"secretKeyRef": ref}}, name
    off = render({**ON, "conclave": {"auth": False}})
    assert "authorization" not in one(off, "ServiceMonitor")["spec"]["endpoints"][0]
    assert [o for o in off if o["kind"] == "Secret" and o["metadata"]["name"].endswith("-metrics")] == []
    assert _env(pod_templates(one(off, "RayService"))["head"], "CONCLAVE_METRICS_TOKEN") is None
    mine = render({"metrics": {"serviceMonitor": {"enabled": True}, "token": {"existingSecret": "prom-token"}}})
    assert one(mine, "ServiceMonitor")["spec"]["endpoints"][0]["authorization"]["credentials"]["name"] == "prom-token"
    assert [o for o in mine if o["kind"] == "Secret" and o["metadata"]["name"].endswith("-metrics")] == []


def test_the_dashboard_is_labelled_for_grafanas_sidecar_and_queries_only_exported_metrics() -> None:
    cm = one(rendered("monitoring"), "ConfigMap", "conclave-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dash = json.loads(cm["data"]["conclave.json"])
    assert dash["uid"] == "conclave-overview" and dash["title"] == "Conclave"
    assert [v["name"] for v in dash["templating"]["list"]] == ["datasource"]
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    exprs = []
    for p in panels:
        assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}"
            exprs.append(t["expr"])
    used = {m for e in exprs for m in re.findall(r"\bconclave_[a-z_]+", e)}
    exported = exported_series()
    assert used <= exported, f"the dashboard queries series Conclave does not export: {sorted(used - exported)}"
    wanted = {  # what issue 18 asks operators to see
        "conclave_queue_depth",
        "conclave_queue_oldest_age_seconds",
        "conclave_runs",
        "conclave_runs_finished_total",
        "conclave_step_seconds_bucket",
        "conclave_model_call_seconds_bucket",
        "conclave_lease_expiries_total",
        "conclave_queue_redeliveries_total",
        "conclave_dead_letters",
        "conclave_ledger_refusals_total",
        "conclave_tokens_total",
        "conclave_cost_usd_total",
        "conclave_webhook_deliveries_total",
        "conclave_approvals_waiting",
    }
    assert wanted <= used, f"missing from the dashboard: {sorted(wanted - used)}"
    custom = render({"metrics": {"dashboard": {"enabled": True, "labels": {"team": "ops"}, "annotations": {"f": "x"}}}})
    cm2 = one(custom, "ConfigMap", "conclave-dashboard")
    assert cm2["metadata"]["labels"]["team"] == "ops" and cm2["metadata"]["annotations"] == {"f": "x"}


@pytest.mark.parametrize(
    ("values", "path"),
    [
        ({"metrics": {"portSpan": 0}}, "/metrics/portSpan"),
        ({"metrics": {"serviceMonitor": {"interval": "soon"}}}, "/metrics/serviceMonitor/interval"),
        ({"metrics": {"dashbord": {}}}, "/metrics"),
    ],
)
def test_bad_monitoring_values_fail_naming_the_value(values: dict[str, Any], path: str) -> None:
    report = helm.lint(CHART, values, namespace=NAMESPACE)
    assert path in json.dumps(report), report


def test_the_dashboard_file_is_the_one_the_chart_ships() -> None:
    on_disk = json.loads((CHART / "dashboards" / "conclave.json").read_text())
    cm = one(rendered("monitoring"), "ConfigMap", "conclave-dashboard")
    assert json.loads(cm["data"]["conclave.json"]) == on_disk
    assert yaml.safe_load(yaml.safe_dump(cm))  # survives a YAML round trip (the block scalar is well indented)
