{{/* Names. */}}
{{- define "conclave.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Object-name prefix; kept to 40 characters because KubeRay appends suffixes to the RayCluster and pod names. */}}
{{- define "conclave.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "conclave.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "conclave.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "conclave.selectorLabels" -}}
app.kubernetes.io/name: {{ include "conclave.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "conclave.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "conclave.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "conclave.image" -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}

{{/* Secrets: names and keys. */}}
{{- define "conclave.rayTokenSecret" -}}
{{- default (printf "%s-ray-token" (include "conclave.fullname" .)) .Values.ray.auth.existingSecret -}}
{{- end -}}

{{- define "conclave.redisPasswordSecret" -}}
{{- default (printf "%s-redis" (include "conclave.fullname" .)) .Values.redis.bundled.auth.existingSecret -}}
{{- end -}}

{{- define "conclave.redisPasswordKey" -}}
{{- if .Values.redis.bundled.auth.existingSecret -}}
{{- .Values.redis.bundled.auth.existingSecretPasswordKey -}}
{{- else -}}
password
{{- end -}}
{{- end -}}

{{- define "conclave.redisUrlSecret" -}}
{{- default (printf "%s-redis-url" (include "conclave.fullname" .)) .Values.redis.external.existingSecret -}}
{{- end -}}

{{- define "conclave.redisUrlKey" -}}
{{- if .Values.redis.external.existingSecret -}}
{{- .Values.redis.external.existingSecretKey -}}
{{- else -}}
url
{{- end -}}
{{- end -}}

{{- define "conclave.redisHost" -}}
{{- printf "%s-redis" (include "conclave.fullname" .) -}}
{{- end -}}

{{/*
A random secret value that survives upgrades: the value already in the cluster when there is one
(lookup returns nothing in `helm template`, so an offline render always draws a new one).
Call with (list $ "secret-name" "key" length).
*/}}
{{- define "conclave.persistentRandom" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $key := index . 2 -}}
{{- $len := index . 3 -}}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace $name -}}
{{- if and $existing $existing.data (hasKey $existing.data $key) -}}
{{- index $existing.data $key -}}
{{- else -}}
{{- randAlphaNum $len | b64enc -}}
{{- end -}}
{{- end -}}

{{/*
Cross-field checks that values.schema.json cannot express. Each failure names the value to change.
Included once, from the RayService template.
*/}}
{{- define "conclave.validate" -}}
{{- $names := list -}}
{{- $gpuMax := 0 -}}
{{- range .Values.gpuWorkerGroups -}}
{{- if gt (int .gpus) $gpuMax -}}{{- $gpuMax = int .gpus -}}{{- end -}}
{{- if gt (int .minReplicas) (int .maxReplicas) -}}
{{- fail (printf "gpuWorkerGroups[%s]: minReplicas (%v) is more than maxReplicas (%v)" .name .minReplicas .maxReplicas) -}}
{{- end -}}
{{- if or (lt (int .replicas) (int .minReplicas)) (gt (int .replicas) (int .maxReplicas)) -}}
{{- fail (printf "gpuWorkerGroups[%s]: replicas (%v) must lie between minReplicas (%v) and maxReplicas (%v)" .name .replicas .minReplicas .maxReplicas) -}}
{{- end -}}
{{- end -}}
{{- $groupNames := list -}}
{{- range .Values.gpuWorkerGroups -}}
{{- if has .name $groupNames -}}
{{- fail (printf "gpuWorkerGroups: the group name %q is used twice; group names must be unique" .name) -}}
{{- end -}}
{{- if eq .name "cpu" -}}
{{- fail "gpuWorkerGroups: the group name \"cpu\" is reserved for cpuWorkers" -}}
{{- end -}}
{{- $groupNames = append $groupNames .name -}}
{{- end -}}
{{- with .Values.cpuWorkers -}}
{{- if .enabled -}}
{{- if gt (int .minReplicas) (int .maxReplicas) -}}
{{- fail (printf "cpuWorkers: minReplicas (%v) is more than maxReplicas (%v)" .minReplicas .maxReplicas) -}}
{{- end -}}
{{- if or (lt (int .replicas) (int .minReplicas)) (gt (int .replicas) (int .maxReplicas)) -}}
{{- fail (printf "cpuWorkers: replicas (%v) must lie between minReplicas (%v) and maxReplicas (%v)" .replicas .minReplicas .maxReplicas) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $i, $m := .Values.models -}}
{{- if has $m.name $names -}}
{{- fail (printf "models[%d]: the model name %q is used twice; model names must be unique" $i $m.name) -}}
{{- end -}}
{{- $names = append $names $m.name -}}
{{- with $m.autoscaling -}}
{{- if gt (int (default 1 .min_replicas)) (int (default 2 .max_replicas)) -}}
{{- fail (printf "models[%d] (%s): autoscaling.min_replicas (%v) is more than autoscaling.max_replicas (%v)" $i $m.name .min_replicas .max_replicas) -}}
{{- end -}}
{{- end -}}
{{- $gpus := float64 (default 0 $m.num_gpus) -}}
{{- if eq $m.engine "vllm" -}}
{{- $tp := int (default 1 (dig "tensor_parallel_size" 1 ($m.options | default dict))) -}}
{{- if lt $gpus (float64 $tp) -}}
{{- fail (printf "models[%d] (%s): num_gpus (%v) is less than options.tensor_parallel_size (%d); a vLLM replica needs one GPU per tensor-parallel rank" $i $m.name $gpus $tp) -}}
{{- end -}}
{{- end -}}
{{- if gt $gpus 0.0 -}}
{{- if not $.Values.gpuWorkerGroups -}}
{{- fail (printf "models[%d] (%s): num_gpus is %v but gpuWorkerGroups is empty; add a GPU worker group" $i $m.name $gpus) -}}
{{- end -}}
{{- if gt $gpus (float64 $gpuMax) -}}
{{- fail (printf "models[%d] (%s): num_gpus (%v) is more than any GPU worker group offers per pod (largest: %d); raise gpuWorkerGroups[].gpus" $i $m.name $gpus $gpuMax) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- with .Values.conclave.defaultModel -}}
{{- if not (has . $names) -}}
{{- fail (printf "conclave.defaultModel: %q is not one of the configured models (%s)" . (join ", " $names)) -}}
{{- end -}}
{{- end -}}
{{- if eq .Values.redis.mode "external" -}}
{{- if and (not .Values.redis.external.url) (not .Values.redis.external.existingSecret) -}}
{{- fail "redis.mode is external: set redis.external.existingSecret (a Secret holding the URL) or redis.external.url" -}}
{{- end -}}
{{- if and .Values.redis.external.url .Values.redis.external.existingSecret -}}
{{- fail "redis.external: set either url or existingSecret, not both" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.ingress.enabled (not .Values.ingress.hosts) -}}
{{- fail "ingress.enabled is true but ingress.hosts is empty; add at least one host" -}}
{{- end -}}
{{- end -}}

{{/* Settings passed to the api and workers applications (conclave.config.Settings). */}}
{{- define "conclave.settings" -}}
{{- $c := .Values.conclave -}}
{{- $s := dict "key_prefix" $c.keyPrefix "auth" $c.auth "lease_seconds" $c.leaseSeconds "max_attempts" $c.maxAttempts "workers" (int $c.workers.replicas) "worker_concurrency" (int $c.workers.concurrency) "models" .Values.models -}}
{{- if $c.defaultModel -}}
{{- $_ := set $s "default_model" $c.defaultModel -}}
{{- end -}}
{{- $m := .Values.metrics -}}
{{- $_ := set $s "metrics" (dict "worker_port" (int $m.workerPort) "port_span" (int $m.portSpan) "max_tenants" (int $m.maxTenants)) -}}
{{- $s = mergeOverwrite $s (deepCopy $c.extraSettings) -}}
{{- toYaml $s -}}
{{- end -}}

{{/* The serveConfigV2 document: the api, models and workers applications. Only the api has an HTTP route;
     the models and workers are reached through DeploymentHandles (route_prefix null). */}}
{{- define "conclave.serveConfig" -}}
{{- $c := .Values.conclave -}}
{{- $settings := include "conclave.settings" . | fromYaml -}}
{{- $api := dict "name" "api" "import_path" "conclave.api.ingress:build_app" "route_prefix" "/" "args" (dict "replicas" (int $c.api.replicas) "settings" $settings) "deployments" (list (dict "name" "api" "ray_actor_options" (dict "num_cpus" $c.api.numCpus))) -}}
{{- $models := dict "name" "models" "import_path" "conclave.cluster.deployment:build_app" "route_prefix" nil "args" (dict "models" .Values.models) -}}
{{- $workers := dict "name" "workers" "import_path" "conclave.controller.serve_worker:build_app" "route_prefix" nil "args" (dict "workers" (int $c.workers.replicas) "concurrency" (int $c.workers.concurrency) "settings" $settings) "deployments" (list (dict "name" "worker" "ray_actor_options" (dict "num_cpus" $c.workers.numCpus))) -}}
{{- $cfg := dict "proxy_location" "EveryNode" "http_options" (dict "host" "0.0.0.0" "port" 8000) "applications" (list $api $models $workers) -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* Environment shared by every Ray container (head and workers). No secret value appears here: only references. */}}
{{- define "conclave.env" -}}
{{- $c := .Values.conclave -}}
- name: CONCLAVE_KEY_PREFIX
  value: {{ $c.keyPrefix | quote }}
- name: CONCLAVE_AUTH
  value: {{ ternary "1" "0" $c.auth | quote }}
- name: CONCLAVE_LOG_LEVEL
  value: {{ $c.logLevel | quote }}
{{- if eq .Values.redis.mode "bundled" }}
- name: CONCLAVE_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "conclave.redisPasswordSecret" . }}
      key: {{ include "conclave.redisPasswordKey" . }}
- name: CONCLAVE_REDIS_URL
  value: "redis://:$(CONCLAVE_REDIS_PASSWORD)@{{ include "conclave.redisHost" . }}:6379/0"
{{- else }}
- name: CONCLAVE_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "conclave.redisUrlSecret" . }}
      key: {{ include "conclave.redisUrlKey" . }}
{{- end }}
{{- if include "conclave.metricsTokenWanted" . }}
- name: CONCLAVE_METRICS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "conclave.metricsTokenSecret" . }}
      key: {{ .Values.metrics.token.existingSecretKey }}
{{- end }}
{{- with $c.telemetry }}
{{- if .otlpEndpoint }}
- name: OTEL_TRACES_EXPORTER
  value: otlp
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .otlpEndpoint | quote }}
{{- end }}
- name: OTEL_SERVICE_NAME
  value: {{ .serviceName | quote }}
- name: OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT
  value: {{ ternary "true" "false" .captureContent | quote }}
{{- end }}
{{- range $c.secretEnv }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .key }}
{{- end }}
{{- with $c.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels on every Ray pod; component is ray-head or ray-worker. Call with (list $ "ray-head"). */}}
{{- define "conclave.rayPodLabels" -}}
{{- $root := index . 0 -}}
{{ include "conclave.selectorLabels" $root }}
app.kubernetes.io/component: {{ index . 1 }}
conclave.io/ray-pod: "true"
{{- with $root.Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The security context shared by Ray containers: the image's non-root user, no privilege escalation. */}}
{{- define "conclave.containerSecurityContext" -}}
allowPrivilegeEscalation: false
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Metrics: the bearer token Prometheus sends to the API's /metrics (needed when auth is on). */}}
{{- define "conclave.metricsTokenWanted" -}}
{{- if and .Values.conclave.auth (or .Values.metrics.serviceMonitor.enabled .Values.metrics.token.existingSecret) -}}true{{- end -}}
{{- end -}}

{{- define "conclave.metricsTokenSecret" -}}
{{- default (printf "%s-metrics" (include "conclave.fullname" .)) .Values.metrics.token.existingSecret -}}
{{- end -}}
