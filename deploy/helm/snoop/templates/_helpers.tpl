{{/* Names and labels ------------------------------------------------------------ */}}

{{- define "snoop.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "snoop.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "snoop.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "snoop.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Selector labels of one component: include "snoop.selectorLabels" (list . "tracer") */}}
{{- define "snoop.selectorLabels" -}}
{{- $top := index . 0 -}}
app.kubernetes.io/name: {{ include "snoop.name" $top }}
app.kubernetes.io/instance: {{ $top.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "snoop.labels" -}}
{{- $top := index . 0 -}}
{{ include "snoop.selectorLabels" . }}
app.kubernetes.io/part-of: snoop
app.kubernetes.io/version: {{ $top.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $top.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" $top.Chart.Name $top.Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "snoop.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}
{{- end -}}

{{/* Values checked once, with one clear message each ----------------------------- */}}

{{- define "snoop.validate" -}}
{{- if not (has .Values.layout (list "node" "sidecar")) -}}
{{- fail (printf "layout=%q: expected node or sidecar" .Values.layout) -}}
{{- end -}}
{{- if not (has .Values.tracer.capabilities (list "bpf" "sys-admin")) -}}
{{- fail (printf "tracer.capabilities=%q: expected bpf (BPF, PERFMON, SYS_PTRACE) or sys-admin (SYS_ADMIN, SYS_PTRACE)" .Values.tracer.capabilities) -}}
{{- end -}}
{{- if not (has .Values.tracer.containerRuntime (list "containerd" "docker" "none")) -}}
{{- fail (printf "tracer.containerRuntime=%q: expected containerd, docker or none" .Values.tracer.containerRuntime) -}}
{{- end -}}
{{- if and .Values.push.enabled (not .Values.push.endpoint) (not .Values.receiver.enabled) -}}
{{- fail "push.enabled=true: expected push.endpoint, or receiver.enabled=true to push to the chart's receiver" -}}
{{- end -}}
{{- end -}}

{{/* Security contexts -------------------------------------------------------------- */}}

{{/* The tracer: root (BPF needs it) with only the capabilities it uses. */}}
{{- define "snoop.tracerSecurityContext" -}}
runAsUser: 0
privileged: false
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
  {{- if eq .Values.tracer.capabilities "sys-admin" }}
  add: [SYS_ADMIN, SYS_PTRACE, DAC_READ_SEARCH]
  {{- else }}
  add: [BPF, PERFMON, SYS_PTRACE, DAC_READ_SEARCH]
  {{- end }}
seccompProfile:
  type: {{ .Values.tracer.seccompProfile }}
{{- end -}}

{{/* Everything else: non-root, no capabilities at all. */}}
{{- define "snoop.nonRootSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.nonRootUser }}
runAsGroup: {{ .Values.nonRootUser }}
privileged: false
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "snoop.nonRootPodSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.nonRootUser }}
runAsGroup: {{ .Values.nonRootUser }}
fsGroup: {{ .Values.nonRootUser }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Probes: include "snoop.probes" (dict "port" 9090 "startup" true) */}}
{{- define "snoop.probes" -}}
{{- if .startup }}
startupProbe:  # bcc's compile: about 2 s here, minutes on a loaded node
  httpGet: {path: /readyz, port: {{ .port }}}
  periodSeconds: 2
  timeoutSeconds: 2
  failureThreshold: 150
{{- end }}
readinessProbe:
  httpGet: {path: /readyz, port: {{ .port }}}
  periodSeconds: 5
  timeoutSeconds: 2
livenessProbe:  # /healthz: the process serves; /readyz may be 503 for a while (a full disk)
  httpGet: {path: /healthz, port: {{ .port }}}
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 6
{{- end -}}

{{/* The reporter's push, in either layout (when push.enabled). */}}
{{- define "snoop.pushEnv" -}}
- name: SNOOP_API_ENDPOINT
  value: {{ default (printf "http://%s-receiver:%v" (include "snoop.fullname" .) .Values.receiver.port) .Values.push.endpoint | quote }}
- name: SNOOP_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.push.tokenSecret.name }}
      key: {{ .Values.push.tokenSecret.key }}
{{- end -}}

{{/*
Secrets copied into memory, readable by the processes' user only. A Secret's files are
root's (unreadable by a non-root process) or, with fsGroup, group-readable (0440 whatever
defaultMode says: kubernetes/kubernetes#57923), and Snoop refuses a secret that group or
others can read. The copy runs as that user, reads through fsGroup, and installs 0400.
include "snoop.copySecrets" (dict "top" . "script" (include "..." .) "mounts" (list ...))
*/}}
{{- define "snoop.copySecrets" -}}
- name: copy-secrets
  image: {{ include "snoop.image" .top }}
  imagePullPolicy: {{ .top.Values.image.pullPolicy }}
  command: ["/bin/sh", "-ec"]
  args:
    - |
      {{- .script | nindent 6 }}
  resources:
    {{- toYaml .top.Values.secretCopy.resources | nindent 4 }}
  securityContext:
    {{- include "snoop.nonRootSecurityContext" .top | nindent 4 }}
  volumeMounts:
    {{- range .mounts }}
    - {{ toJson . }}
    {{- end }}
{{- end -}}

{{- define "snoop.central.copyScript" -}}
install -m 0400 /secrets/server/server.key_secret /keys/server.key_secret
install -d -m 0755 /keys/allowed
set -- /secrets/allowed/*.key
[ -e "$1" ] || { echo "no *.key in the Secret {{ .Values.curve.allowedSecret }}: no tracer could connect" >&2; exit 1; }
install -m 0444 "$@" /keys/allowed/
{{- end -}}

{{- define "snoop.receiver.copyScript" -}}
install -m 0400 /secrets/source/tokens /secrets/tokens
{{- end -}}

{{/* The sidecar ------------------------------------------------------------------ */}}

{{/* The native sidecar: one initContainer with restartPolicy: Always. */}}
{{- define "snoop.sidecar.initContainers" -}}
- name: snoop
  image: {{ include "snoop.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  restartPolicy: Always  # a native sidecar: started, and ready, before the application
  args: ["run"]
  env:
    - name: SNOOP_TARGET_MODE
      value: pod
    - name: SNOOP_POD_NAME
      valueFrom:
        fieldRef: {fieldPath: metadata.name}
    - name: SNOOP_POD_UID  # finds the pod's cgroup in a private cgroup namespace
      valueFrom:
        fieldRef: {fieldPath: metadata.uid}
    - name: SNOOP_NAMESPACE
      valueFrom:
        fieldRef: {fieldPath: metadata.namespace}
    # The downward API has no image field: annotate the pod with what it runs.
    - name: SNOOP_IMAGE_REF
      valueFrom:
        fieldRef: {fieldPath: "metadata.annotations['snoop/image-ref']"}
    - name: SNOOP_IMAGE_DIGEST
      valueFrom:
        fieldRef: {fieldPath: "metadata.annotations['snoop/image-digest']"}
    - name: SNOOP_REPORT_PATH
      value: /data/$(SNOOP_NAMESPACE)_$(SNOOP_POD_NAME).json
    - name: SNOOP_METRICS_ADDR  # probes reach the pod IP
      value: "0.0.0.0:{{ .Values.sidecar.metricsPort }}"
    - name: SNOOP_LOG_FORMAT
      value: {{ .Values.logFormat }}
    {{- if .Values.push.enabled }}
    {{- include "snoop.pushEnv" . | nindent 4 }}
    {{- end }}
  ports:
    - {name: snoop-tracer, containerPort: {{ .Values.sidecar.metricsPort }}}
    - {name: snoop-processor, containerPort: {{ add .Values.sidecar.metricsPort 1 }}}
    - {name: snoop-reporter, containerPort: {{ add .Values.sidecar.metricsPort 2 }}}
  # No readinessProbe: a sidecar's readiness is the pod's, and Snoop must never take
  # the application out of its Service. The startup probe holds the application back
  # until the tracer is attached, so its first instruction is traced.
  startupProbe:
    httpGet: {path: /readyz, port: {{ .Values.sidecar.metricsPort }}}
    periodSeconds: 2
    timeoutSeconds: 2
    failureThreshold: 150
  livenessProbe:
    httpGet: {path: /healthz, port: {{ .Values.sidecar.metricsPort }}}
    periodSeconds: 10
    timeoutSeconds: 2
    failureThreshold: 6
  resources:
    {{- toYaml .Values.sidecar.resources | nindent 4 }}
  securityContext:
    {{- include "snoop.tracerSecurityContext" . | nindent 4 }}
  volumeMounts:
    - {name: snoop-cgroup, mountPath: /sys/fs/cgroup, readOnly: true}
    - {name: snoop-tracing, mountPath: /sys/kernel/tracing, readOnly: true}
    - {name: snoop-modules, mountPath: /lib/modules, readOnly: true}
    - {name: snoop-src, mountPath: /usr/src, readOnly: true}
    - {name: snoop-reports, mountPath: /data}
    - {name: snoop-run, mountPath: /run/snoop}
    - {name: snoop-tmp, mountPath: /tmp}
{{- end -}}

{{- define "snoop.hostPathVolumes" -}}
- name: {{ .prefix }}cgroup
  hostPath: {path: {{ .top.Values.tracer.hostPaths.cgroup }}, type: Directory}
- name: {{ .prefix }}tracing
  hostPath: {path: {{ .top.Values.tracer.hostPaths.tracing }}, type: Directory}
- name: {{ .prefix }}modules
  hostPath: {path: {{ .top.Values.tracer.hostPaths.modules }}, type: Directory}
- name: {{ .prefix }}src
  hostPath: {path: {{ .top.Values.tracer.hostPaths.src }}, type: Directory}
{{- end -}}

{{- define "snoop.sidecar.volumes" -}}
{{ include "snoop.hostPathVolumes" (dict "top" . "prefix" "snoop-") }}
- name: snoop-reports
  {{- toYaml .Values.sidecar.reportsVolume | nindent 2 }}
- name: snoop-run
  emptyDir: {sizeLimit: 1Gi}  # on disk: up to SNOOP_PENDING_MAX events wait here
- name: snoop-tmp
  emptyDir: {sizeLimit: 256Mi}
{{- end -}}

{{/* What a pod needs besides its own containers, for spec.template.spec. */}}
{{- define "snoop.sidecar.podSpec" -}}
hostPID: true  # BPF events carry host pids; the tracer reads /proc/<pid> of the application
terminationGracePeriodSeconds: 60  # the final report is written after the application stops
initContainers:
  {{- include "snoop.sidecar.initContainers" . | nindent 2 }}
volumes:
  {{- include "snoop.sidecar.volumes" . | nindent 2 }}
{{- end -}}
