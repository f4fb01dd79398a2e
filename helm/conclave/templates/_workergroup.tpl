{{/* One KubeRay worker group. Call with (list $ group); a group with gpus > 0 requests nvidia.com/gpu. */}}
{{- define "conclave.workerGroup" -}}
{{- $root := index . 0 -}}
{{- $g := index . 1 -}}
{{- $gpus := int (default 0 $g.gpus) -}}
- groupName: {{ $g.name }}
  replicas: {{ int $g.replicas }}
  minReplicas: {{ int $g.minReplicas }}
  maxReplicas: {{ int $g.maxReplicas }}
  rayStartParams:
    {{- $params := deepCopy (default dict $g.rayStartParams) }}
    {{- if gt $gpus 0 }}
    {{- $_ := set $params "num-gpus" (toString $gpus) }}
    {{- end }}
    {{- range $k, $v := $params }}
    {{ $k }}: {{ $v | toString | quote }}
    {{- else }} {}
    {{- end }}
  template:
    metadata:
      labels:
        {{- include "conclave.rayPodLabels" (list $root "ray-worker") | nindent 8 }}
      {{- with $root.Values.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ include "conclave.serviceAccountName" $root }}
      automountServiceAccountToken: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        fsGroup: 1000
      containers:
        - name: ray-worker
          image: {{ include "conclave.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          env:
            {{- include "conclave.env" $root | nindent 12 }}
          resources:
            {{- $res := deepCopy (default dict $g.resources) }}
            {{- if gt $gpus 0 }}
            {{- $_ := set $res "requests" (merge (default dict $res.requests) (dict "nvidia.com/gpu" $gpus)) }}
            {{- $_ := set $res "limits" (merge (default dict $res.limits) (dict "nvidia.com/gpu" $gpus)) }}
            {{- end }}
            {{- toYaml $res | nindent 12 }}
          securityContext:
            {{- include "conclave.containerSecurityContext" $root | nindent 12 }}
          volumeMounts:
            - {name: dshm, mountPath: /dev/shm}
            - {name: ray-tmp, mountPath: /tmp/ray}
            {{- with $g.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: dshm
          emptyDir: {medium: Memory, sizeLimit: {{ default "2Gi" $g.shmSize }}}
        - name: ray-tmp
          emptyDir: {}
        {{- with $g.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $g.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $g.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $g.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}
