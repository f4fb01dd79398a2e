"""The Helm chart (helm/conclave), rendered and linted by the real Helm engine (helm-python-sdk binds Helm's
Go SDK; no cluster, no helm binary), then checked the way a cluster would check it: core objects against the
Kubernetes schemas (kubernetes-validate), the RayService against KubeRay's own CRD schema (a copy of the v1.7.0
CRD under helm/tests/), and the serveConfigV2 it carries against Ray Serve's config schema and Conclave's own
pydantic models, so that a value that would fail at deploy time fails here.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel, ConfigDict

import conclave.cluster.engines as engines
from conclave.cluster.config import ModelSpec
from conclave.config import Settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "conclave"
EXAMPLES = CHART / "examples"
CRD = ROOT / "helm" / "tests" / "kuberay-v1.7.0-ray.io_rayservices.yaml"
KUBE_VERSION = "1.33.0"
RELEASE = "conclave"
NAMESPACE = "conclave"
# The GGUF path the Dockerfile links inside the image.
IMAGE_GGUF = "/opt/conclave/models/SmolLM2-135M-Instruct.Q4_1.gguf"


def _example(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / name).read_text())


SCENARIOS: dict[str, dict[str, Any] | None] = {
    "default": None,
    "cpu-llamacpp": _example("cpu-llamacpp.yaml"),
    "gpu-vllm": _example("gpu-vllm.yaml"),
    "external-openai-redis": _example("external-openai-redis.yaml"),
    "auth-off": {"conclave": {"auth": False}, "ray": {"auth": {"enabled": False}, "autoscaler": {"enabled": False}}},
    "existing-secrets": {
        "ray": {"auth": {"existingSecret": "my-ray-token"}},
        "redis": {"bundled": {"auth": {"existingSecret": "my-redis", "existingSecretPasswordKey": "redis-password"}}},
    },
    "external-redis-url": {"redis": {"mode": "external", "external": {"url": "rediss://:s3cr3tpw@redis.db:6380/2"}}},
    "monitoring": {
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}, "dashboard": {"enabled": True}}
    },
}


@functools.cache
def _chart() -> helm.Chart:
    return helm.Chart.load(CHART)


def render(values: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every object the chart renders for ``values``, in template order."""
    manifests = _chart().render(copy.deepcopy(values), name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(d for d in yaml.safe_load_all(text) if d)
    return objects


@functools.cache
def _rendered(scenario: str) -> str:
    return json.dumps(render(SCENARIOS[scenario]))


def rendered(scenario: str) -> list[dict[str, Any]]:
    return json.loads(_rendered(scenario))


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def rayservice(scenario: str) -> dict[str, Any]:
    return one(rendered(scenario), "RayService")


def serve_config(scenario: str) -> dict[str, Any]:
    cfg = yaml.safe_load(rayservice(scenario)["spec"]["serveConfigV2"])
    assert isinstance(cfg, dict)
    return cfg


def app(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    apps = {a["name"]: a for a in cfg["applications"]}
    return apps[name]


def pod_templates(rs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    cluster = rs["spec"]["rayClusterConfig"]
    out = {"head": cluster["headGroupSpec"]["template"]}
    for g in cluster.get("workerGroupSpecs", []):
        out[g["groupName"]] = g["template"]
    return out


# --- lint -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_helm_lint_passes(scenario: str) -> None:
    report = helm.lint(CHART, copy.deepcopy(SCENARIOS[scenario]), strict=True, namespace=NAMESPACE)
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    serious = [m for m in report["messages"] if m["severity"] >= 2]
    assert serious == [], serious


def test_helm_lint_reports_bad_values() -> None:
    report = helm.lint(CHART, {"conclave": {"workers": {"replicas": -3}}}, namespace=NAMESPACE)
    text = json.dumps(report)
    assert report["errors"] or any(m["severity"] == 3 for m in report["messages"]), report
    assert "/conclave/workers/replicas" in text and "minimum" in text


# --- what is rendered -------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_renders_a_rayservice_and_the_redis_objects(scenario: str) -> None:
    objects = rendered(scenario)
    rs = one(objects, "RayService")
    assert rs["apiVersion"] == "ray.io/v1"
    assert rs["metadata"]["name"] == "conclave"
    kinds = sorted(o["kind"] for o in objects)
    values = SCENARIOS[scenario] or {}
    if values.get("redis", {}).get("mode", "bundled") == "bundled":
        sts = one(objects, "StatefulSet", "conclave-redis")
        assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
        one(objects, "Service", "conclave-redis")
        one(objects, "ConfigMap", "conclave-redis")
        one(objects, "NetworkPolicy", "conclave-redis")
    else:
        assert "StatefulSet" not in kinds and "NetworkPolicy" not in kinds
    assert "ServiceAccount" in kinds and "PodDisruptionBudget" in kinds


def test_default_render_is_cpu_only_with_the_bundled_model() -> None:
    rs = rayservice("default")
    cluster = rs["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == "2.60.0"
    assert [g["groupName"] for g in cluster["workerGroupSpecs"]] == ["cpu"]
    assert "nvidia.com/gpu" not in json.dumps(rs)
    models = app(serve_config("default"), "models")["args"]["models"]
    assert [(m["name"], m["engine"], m["options"]["model_path"]) for m in models] == [
        ("smollm2-135m", "llamacpp", IMAGE_GGUF)
    ]


# --- Kubernetes schemas -----------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_core_objects_validate_against_kubernetes_schemas(scenario: str) -> None:
    core = [o for o in rendered(scenario) if o["kind"] not in ("RayService", "ServiceMonitor")]
    assert core
    for obj in core:
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {e.message} at {list(e.path)}")


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_ray_pod_templates_and_serve_service_validate_as_kubernetes_objects(scenario: str) -> None:
    """The CRD embeds PodTemplateSpecs and a Service; check them with the full Kubernetes schemas too."""
    rs = rayservice(scenario)
    for group, template in pod_templates(rs).items():
        obj = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": group}, "template": template}
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"pod template of group {group}: {e.message} at {list(e.path)}")
    svc = {"apiVersion": "v1", "kind": "Service", **rs["spec"]["serveService"]}
    kubernetes_validate.validate(svc, KUBE_VERSION, strict=True)


def _structural_strict(schema: Any) -> Any:
    """The CRD schema with unknown fields rejected wherever the API server would prune them (objects with
    ``properties`` and neither ``additionalProperties`` nor ``x-kubernetes-preserve-unknown-fields``), so a
    misspelt field fails instead of vanishing silently."""
    if isinstance(schema, list):
        return [_structural_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _structural_strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def _crd_validator() -> jsonschema.Draft7Validator:
    docs = [d for d in yaml.safe_load_all(CRD.read_text()) if d]
    (crd,) = docs
    assert crd["spec"]["names"]["kind"] == "RayService"
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = _structural_strict(v1["schema"]["openAPIV3Schema"])
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_rayservice_validates_against_the_kuberay_crd(scenario: str) -> None:
    rs = rayservice(scenario)
    errors = sorted(_crd_validator().iter_errors(rs), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors[:10])


def test_crd_check_rejects_a_misspelt_field() -> None:
    rs = copy.deepcopy(rayservice("default"))
    rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplica"] = 3
    errors = list(_crd_validator().iter_errors(rs))
    assert any("maxReplica" in e.message for e in errors)


# --- serveConfigV2 against Ray Serve and Conclave --------------------------------------------------------


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_serve_config_is_valid_for_ray_serve(scenario: str) -> None:
    from ray.serve.schema import ServeDeploySchema

    cfg = serve_config(scenario)
    schema = ServeDeploySchema.model_validate(cfg)
    assert schema.http_options.host == "0.0.0.0" and schema.http_options.port == 8000
    paths = {a.name: (a.import_path, a.route_prefix) for a in schema.applications}
    assert paths == {
        "api": ("conclave.api.ingress:build_app", "/"),
        "models": ("conclave.cluster.deployment:build_app", None),
        "workers": ("conclave.controller.serve_worker:build_app", None),
    }
    # The deployment overrides must name deployments that exist in the code.
    assert [d.name for d in app_schema(schema, "api").deployments] == ["api"]
    assert [d.name for d in app_schema(schema, "workers").deployments] == ["worker"]


def app_schema(schema: Any, name: str) -> Any:
    return next(a for a in schema.applications if a.name == name)


def _engine_registered(engine: str) -> bool:
    try:
        engines.options_model(engine)
    except ValueError:
        return False
    return True


def _validate_model(spec: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelSpec:
    """Validate one model entry with Conclave's ModelSpec. Two things only the cluster can know are stood in
    for, each stated: a llama.cpp ``model_path`` is a file inside the image (here: a temporary file at a
    path checked separately), and an engine whose options model is not in this checkout yet has its options
    checked by the engine test below once it is."""
    spec = copy.deepcopy(spec)
    if spec["engine"] == "llamacpp":
        assert spec["options"]["model_path"].startswith("/") and spec["options"]["model_path"].endswith(".gguf")
        gguf = tmp_path / Path(spec["options"]["model_path"]).name
        gguf.write_bytes(b"GGUF")
        spec["options"]["model_path"] = str(gguf)
    if not _engine_registered(spec["engine"]):

        class AnyOptions(BaseModel):
            model_config = ConfigDict(extra="allow")

        real = engines.options_model
        monkeypatch.setattr(
            engines, "options_model", lambda e: AnyOptions if e == spec["engine"] else real(e), raising=True
        )
    return ModelSpec.model_validate(spec)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_serve_config_args_validate_with_conclave_models(
    scenario: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conclave.api.ingress import ApiArgs
    from conclave.controller.serve_worker import WorkerArgs

    cfg = serve_config(scenario)
    models = app(cfg, "models")["args"]["models"]
    specs = [_validate_model(m, tmp_path, monkeypatch) for m in models]
    names = [s.name for s in specs]
    assert len(set(names)) == len(names)

    api_args = ApiArgs.model_validate(app(cfg, "api")["args"])
    worker_args = WorkerArgs.model_validate(app(cfg, "workers")["args"])
    assert api_args.redis_url is None and worker_args.redis_url is None, "the Redis URL must come from a Secret"
    for args in (api_args, worker_args):
        assert args.settings is not None
        settings_in = copy.deepcopy(args.settings)
        settings_in["models"] = [s.model_dump(mode="json", exclude_unset=True) for s in specs]
        settings = Settings.model_validate(settings_in)
        # The api and the workers route to exactly the models the models app deploys.
        assert [m["name"] for m in args.settings["models"]] == names
        assert args.settings["models"] == models
        if settings.default_model is not None:
            assert settings.default_model in names
    assert worker_args.workers == app(cfg, "workers")["args"]["settings"]["workers"]
    values = SCENARIOS[scenario] or {}
    assert api_args.settings["auth"] is values.get("conclave", {}).get("auth", True)


def test_models_app_args_validate_with_the_deployment_args_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = pytest.importorskip(
        "conclave.cluster.deployment", reason="conclave.cluster.deployment (the models app) is not in this checkout"
    )
    for scenario in SCENARIOS:
        models = app(serve_config(scenario), "models")["args"]["models"]
        specs = [_validate_model(m, tmp_path, monkeypatch).model_dump(mode="json") for m in models]
        deployment.AppArgs.model_validate({"models": specs})


def _example_models() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for scenario in SCENARIOS:
        for m in app(serve_config(scenario), "models")["args"]["models"]:
            out.append((f"{scenario}:{m['name']}", m))
    return out


@pytest.mark.parametrize("model", [m for _, m in _example_models()], ids=[i for i, _ in _example_models()])
def test_engine_options_validate_with_the_engine_options_model(model: dict[str, Any], tmp_path: Path) -> None:
    from conclave.cluster.engines import options_model

    if not _engine_registered(model["engine"]):
        pytest.skip(f"engine {model['engine']!r} has no options model in this checkout yet")
    options = copy.deepcopy(model["options"])
    if model["engine"] == "llamacpp":
        gguf = tmp_path / "m.gguf"
        gguf.write_bytes(b"GGUF")
        options["model_path"] = str(gguf)
    options_model(model["engine"]).model_validate(options)


# --- secrets ----------------------------------------------------------------------------------------------

_SECRETISH = re.compile(r"PASSWORD|TOKEN|SECRET|API_KEY|REDIS_URL|AUTH$", re.I)


def _secret_values(objects: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    out = {}
    for o in objects:
        if o["kind"] == "Secret":
            for k, v in (o.get("data") or {}).items():
                out[(o["metadata"]["name"], k)] = base64.b64decode(v).decode()
            for k, v in (o.get("stringData") or {}).items():
                out[(o["metadata"]["name"], k)] = v
    return out


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_secrets_are_referenced_never_inlined(scenario: str) -> None:
    objects = rendered(scenario)
    secrets = _secret_values(objects)
    values = SCENARIOS[scenario] or {}
    outside = json.dumps([o for o in objects if o["kind"] != "Secret"])
    for (name, key), value in secrets.items():
        assert len(value) >= 8, f"secret {name}/{key} is too short to be a real secret"
        assert value not in outside, f"the value of secret {name}/{key} appears outside its Secret"
    declared = {name for name, _ in secrets} | {
        s for s in re.findall(r'"existingSecret": "([^"]+)"', json.dumps(values))
    }
    declared |= {e["secretName"] for e in values.get("conclave", {}).get("secretEnv", [])}

    rs = one(objects, "RayService")
    for group, template in pod_templates(rs).items():
        (container,) = template["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        for name, e in env.items():
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] in declared, (
                    f"{group}: {name} refers to Secret {ref['name']}, which nothing provides"
                )
            elif _SECRETISH.search(name) and name not in ("CONCLAVE_AUTH",):
                assert name == "CONCLAVE_REDIS_URL", f"{group}: {name} is set inline"
                # Bundled Redis: the URL is composed from the password's secretKeyRef, never a literal.
                assert "$(CONCLAVE_REDIS_PASSWORD)" in e["value"]
                assert "valueFrom" in env["CONCLAVE_REDIS_PASSWORD"]
        assert "CONCLAVE_REDIS_URL" in env
    if rs["spec"]["rayClusterConfig"].get("authOptions"):
        token_secret = rs["spec"]["rayClusterConfig"]["authOptions"]["secretName"]
        assert token_secret in declared
        if (token_secret, "auth_token") in secrets:
            assert len(secrets[(token_secret, "auth_token")]) == 48
    url = values.get("redis", {}).get("external", {}).get("url")
    if url:
        assert secrets[("conclave-redis-url", "url")] == url
        assert url not in outside and "s3cr3tpw" not in outside


def test_existing_secrets_are_used_and_none_generated() -> None:
    objects = rendered("existing-secrets")
    assert [o for o in objects if o["kind"] == "Secret"] == []
    rs = one(objects, "RayService")
    assert rs["spec"]["rayClusterConfig"]["authOptions"] == {"mode": "token", "secretName": "my-ray-token"}
    env = {e["name"]: e for e in pod_templates(rs)["head"]["spec"]["containers"][0]["env"]}
    assert env["CONCLAVE_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "my-redis", "key": "redis-password"}
    sts_env = one(objects, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert sts_env == [
        {"name": "REDISCLI_AUTH", "valueFrom": {"secretKeyRef": {"name": "my-redis", "key": "redis-password"}}}
    ]


def test_auth_off_drops_the_token_and_the_api_key_requirement() -> None:
    objects = rendered("auth-off")
    rs = one(objects, "RayService")
    assert "authOptions" not in rs["spec"]["rayClusterConfig"]
    assert not any(o["kind"] == "Secret" and o["metadata"]["name"].endswith("ray-token") for o in objects)
    assert app(serve_config("auth-off"), "api")["args"]["settings"]["auth"] is False
    head = pod_templates(rs)["head"]["spec"]
    assert head["automountServiceAccountToken"] is False  # no autoscaler: nothing needs the token
    on = rayservice("default")
    assert on["spec"]["rayClusterConfig"]["authOptions"]["mode"] == "token"
    assert app(serve_config("default"), "api")["args"]["settings"]["auth"] is True


# --- GPUs, Redis, least privilege -------------------------------------------------------------------------


def test_gpu_example_puts_vllm_on_a_gpu_group_and_keeps_the_head_cpu_only() -> None:
    rs = rayservice("gpu-vllm")
    cluster = rs["spec"]["rayClusterConfig"]
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert "nvidia.com/gpu" not in json.dumps(head)
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    gpu = groups["gpu-l4"]
    res = gpu["template"]["spec"]["containers"][0]["resources"]
    assert res["limits"]["nvidia.com/gpu"] == 1 and res["requests"]["nvidia.com/gpu"] == 1
    assert gpu["rayStartParams"]["num-gpus"] == "1"
    assert (gpu["minReplicas"], gpu["maxReplicas"]) == (0, 4)
    assert gpu["template"]["spec"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert "nvidia.com/gpu" not in json.dumps(groups["cpu"])
    assert cluster["enableInTreeAutoscaling"] is True
    (vllm,) = [m for m in app(serve_config("gpu-vllm"), "models")["args"]["models"] if m["engine"] == "vllm"]
    assert vllm["num_gpus"] >= vllm["options"]["tensor_parallel_size"]
    assert vllm["num_gpus"] <= int(gpu["rayStartParams"]["num-gpus"])
    env = {e["name"]: e for e in gpu["template"]["spec"]["containers"][0]["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "token"}


def test_bundled_redis_persists_with_aof_and_never_evicts() -> None:
    objects = rendered("default")
    conf = one(objects, "ConfigMap", "conclave-redis")["data"]["valkey.conf"]
    lines = {ln.split(" ", 1)[0]: ln.split(" ", 1)[1] for ln in conf.splitlines() if ln and not ln.startswith("#")}
    assert lines["appendonly"] == "yes"
    assert lines["maxmemory-policy"] == "noeviction"
    assert lines["dir"] == "/data"
    sts = one(objects, "StatefulSet", "conclave-redis")
    pod = sts["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["data"] == "/data"
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert pod["containers"][0]["readinessProbe"] and pod["containers"][0]["livenessProbe"]
    assert pod["automountServiceAccountToken"] is False


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        if expr["operator"] == "In" and labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def test_network_policy_admits_only_this_releases_ray_pods_to_redis() -> None:
    objects = rendered("default")
    policy = one(objects, "NetworkPolicy")
    sts = one(objects, "StatefulSet", "conclave-redis")
    assert _matches(policy["spec"]["podSelector"], sts["spec"]["template"]["metadata"]["labels"])
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    selector = peer["podSelector"]
    for group, template in pod_templates(one(objects, "RayService")).items():
        assert _matches(selector, template["metadata"]["labels"]), f"{group} pods could not reach Redis"
    assert not _matches(selector, sts["spec"]["template"]["metadata"]["labels"])
    assert not _matches(selector, {"app.kubernetes.io/instance": "other", "app.kubernetes.io/component": "ray-head"})
    assert not _matches(selector, {"app.kubernetes.io/instance": RELEASE})


def test_pdb_covers_ray_workers_only() -> None:
    objects = rendered("gpu-vllm")
    pdb = one(objects, "PodDisruptionBudget")
    templates = pod_templates(one(objects, "RayService"))
    assert not _matches(pdb["spec"]["selector"], templates.pop("head")["metadata"]["labels"])
    assert templates and all(_matches(pdb["spec"]["selector"], t["metadata"]["labels"]) for t in templates.values())


def test_service_account_tokens_are_mounted_only_where_the_autoscaler_runs() -> None:
    objects = rendered("default")
    sa = one(objects, "ServiceAccount")
    assert sa["automountServiceAccountToken"] is False
    assert not [o for o in objects if o["kind"] in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")]
    templates = pod_templates(one(objects, "RayService"))
    assert templates.pop("head")["spec"]["automountServiceAccountToken"] is True
    assert all(t["spec"]["automountServiceAccountToken"] is False for t in templates.values())
    assert all(t["spec"]["serviceAccountName"] == sa["metadata"]["name"] for t in templates.values())


def test_ingress_routes_to_the_serve_service() -> None:
    objects = rendered("external-openai-redis")
    ing = one(objects, "Ingress")
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    svc = one(objects, "RayService")["spec"]["serveService"]
    assert backend == {"name": svc["metadata"]["name"], "port": {"number": svc["spec"]["ports"][0]["port"]}}
    assert ing["spec"]["tls"][0]["secretName"] == "conclave-tls"


# --- bad values -------------------------------------------------------------------------------------------

_VLLM = {"name": "q", "engine": "vllm", "options": {"model": "Qwen/Qwen2.5-0.5B-Instruct"}, "num_gpus": 1}
_GPU_GROUP = {"name": "gpu", "gpus": 1, "replicas": 0, "minReplicas": 0, "maxReplicas": 2, "resources": {}}

BAD_VALUES = [
    pytest.param(
        {"models": [{**_VLLM, "replicas": -1}], "gpuWorkerGroups": [_GPU_GROUP]},
        "at '/models/0/replicas': minimum: got -1, want 1",
        id="negative-model-replicas",
    ),
    pytest.param({"conclave": {"workers": {"replicas": -2}}}, "at '/conclave/workers/replicas'", id="negative-workers"),
    pytest.param(
        {"models": [{"name": "m", "engine": "tgi", "options": {}}]},
        "at '/models/0/engine': value must be one of 'llamacpp', 'openai_http', 'vllm', 'sim'",
        id="unknown-engine",
    ),
    pytest.param(
        {"models": [{**_VLLM, "num_gpus": 0}], "gpuWorkerGroups": [_GPU_GROUP]},
        "at '/models/0/num_gpus': minimum: got 0, want 1",
        id="vllm-without-gpu",
    ),
    pytest.param(
        {"models": [{**_VLLM, "options": {}}], "gpuWorkerGroups": [_GPU_GROUP]},
        "at '/models/0/options': missing property 'model'",
        id="vllm-without-model",
    ),
    pytest.param({"models": []}, "at '/models': minItems", id="no-models"),
    pytest.param({"models": [{"name": "bad name!", "engine": "sim"}]}, "at '/models/0/name'", id="model-name-pattern"),
    pytest.param(
        {"models": [{"name": "m", "engine": "sim", "price": {"input": -1}}]},
        "at '/models/0/price/input': minimum",
        id="negative-price",
    ),
    pytest.param({"modles": []}, "additional properties 'modles' not allowed", id="misspelt-key"),
    pytest.param(
        {"redis": {"bundled": {"auth": {"existingSecret": "pw", "existingSecretPasswordKey": ""}}}},
        "at '/redis/bundled/auth/existingSecretPasswordKey'",
        id="redis-password-secret-without-key",
    ),
    pytest.param({"redis": {"mode": "sentinel"}}, "at '/redis/mode'", id="unknown-redis-mode"),
    pytest.param(
        {"redis": {"mode": "external", "external": {"url": "http://redis:6379"}}},
        "at '/redis/external/url'",
        id="external-url-not-redis",
    ),
    pytest.param(
        {"redis": {"mode": "external"}},
        "redis.mode is external: set redis.external.existingSecret (a Secret holding the URL) or redis.external.url",
        id="external-redis-without-url-secret",
    ),
    pytest.param(
        {"models": [_VLLM]},
        "models[0] (q): num_gpus is 1 but gpuWorkerGroups is empty; add a GPU worker group",
        id="gpu-model-without-gpu-group",
    ),
    pytest.param(
        {
            "models": [{**_VLLM, "num_gpus": 2, "options": {"model": "x", "tensor_parallel_size": 2}}],
            "gpuWorkerGroups": [_GPU_GROUP],
        },
        "models[0] (q): num_gpus (2) is more than any GPU worker group offers per pod (largest: 1)",
        id="model-larger-than-gpu-pod",
    ),
    pytest.param(
        {"models": [{**_VLLM, "options": {"model": "x", "tensor_parallel_size": 4}}], "gpuWorkerGroups": [_GPU_GROUP]},
        "models[0] (q): num_gpus (1) is less than options.tensor_parallel_size (4)",
        id="tensor-parallel-without-gpus",
    ),
    pytest.param(
        {"models": [{"name": "m", "engine": "sim"}, {"name": "m", "engine": "sim"}]},
        'models[1]: the model name "m" is used twice',
        id="duplicate-model",
    ),
    pytest.param(
        {"conclave": {"defaultModel": "gpt-5"}},
        'conclave.defaultModel: "gpt-5" is not one of the configured models (smollm2-135m)',
        id="unknown-default-model",
    ),
    pytest.param(
        {"models": [{"name": "m", "engine": "sim", "autoscaling": {"min_replicas": 5, "max_replicas": 2}}]},
        "models[0] (m): autoscaling.min_replicas (5) is more than autoscaling.max_replicas (2)",
        id="autoscaling-inverted",
    ),
    pytest.param(
        {"cpuWorkers": {"replicas": 9, "maxReplicas": 4}},
        "cpuWorkers: replicas (9) must lie between minReplicas (1) and maxReplicas (4)",
        id="cpu-replicas-out-of-bounds",
    ),
    pytest.param(
        {"gpuWorkerGroups": [{**_GPU_GROUP, "gpus": 0}]},
        "at '/gpuWorkerGroups/0/gpus': minimum: got 0, want 1",
        id="gpu-group-without-gpus",
    ),
    pytest.param(
        {"ingress": {"enabled": True}}, "ingress.enabled is true but ingress.hosts is empty", id="ingress-no-host"
    ),
]


@pytest.mark.parametrize(("values", "message"), BAD_VALUES)
def test_bad_values_fail_at_render_time_with_a_clear_message(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmError) as err:
        render(values)
    assert message in str(err.value), str(err.value)


def test_schema_errors_come_from_values_schema_json() -> None:
    """Structural mistakes are the schema's (HelmValuesError); cross-field ones the templates' (HelmRenderError)."""
    with pytest.raises(helm.HelmValuesError):
        _chart().validate_schema({"models": [{"name": "m", "engine": "tgi"}]})
    with pytest.raises(helm.HelmRenderError):
        render({"conclave": {"defaultModel": "nope"}})
    _chart().validate_schema(None)
    for values in SCENARIOS.values():
        _chart().validate_schema(copy.deepcopy(values))
