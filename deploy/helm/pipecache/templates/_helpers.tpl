{{/*
Names. The chart name, truncated to the 63 characters a DNS label allows.
*/}}
{{- define "pipecache.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name prefix of every object: <release>-<chart>, or the release name alone when
it already contains the chart name. Kept to 50 characters so that "-gateway" and the
StatefulSet pod suffixes still fit into 63.
*/}}
{{- define "pipecache.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "pipecache.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels of one component. Call with (dict "ctx" $ "component" "worker").
They never change over the life of a release (selectors are immutable).
*/}}
{{- define "pipecache.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pipecache.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
All labels of one component's objects. Call with (dict "ctx" $ "component" "worker").
*/}}
{{- define "pipecache.labels" -}}
helm.sh/chart: {{ include "pipecache.chart" .ctx }}
{{ include "pipecache.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: pipecache
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "pipecache.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "pipecache.secretName" -}}
{{- default (printf "%s-credentials" (include "pipecache.fullname" .)) .Values.credentials.existingSecret }}
{{- end }}

{{- define "pipecache.masterName" -}}
{{- printf "%s-master" (include "pipecache.fullname" .) }}
{{- end }}

{{- define "pipecache.workerName" -}}
{{- printf "%s-worker" (include "pipecache.fullname" .) }}
{{- end }}

{{- define "pipecache.gatewayName" -}}
{{- printf "%s-gateway" (include "pipecache.fullname" .) }}
{{- end }}

{{- define "pipecache.watcherName" -}}
{{- printf "%s-watcher" (include "pipecache.fullname" .) }}
{{- end }}

{{- define "pipecache.watcherServiceAccountName" -}}
{{- if .Values.watcher.serviceAccount.create }}
{{- default (include "pipecache.watcherName" .) .Values.watcher.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.watcher.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The master's URL as every other component sees it.
*/}}
{{- define "pipecache.masterUrl" -}}
{{- printf "http://%s.%s.svc:%d" (include "pipecache.masterName" .) .Release.Namespace (int .Values.master.port) }}
{{- end }}

{{/*
Pod annotations: Prometheus scrape hints, a checksum of the chart's Secret (so a changed
key rolls the pods) and the component's own annotations.
Call with (dict "ctx" $ "port" 9000 "extra" .Values.master.podAnnotations).
*/}}
{{- define "pipecache.podAnnotations" -}}
{{- if .ctx.Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- if not .ctx.Values.credentials.existingSecret }}
checksum/credentials: {{ omit .ctx.Values.credentials "existingSecret" | toJson | sha256sum }}
{{- end }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Liveness and readiness probes on GET /health of the container's "http" port.
*/}}
{{- define "pipecache.probes" -}}
{{- include "pipecache.httpProbes" (dict "ctx" . "live" "/health" "ready" "/health") }}
{{- end }}

{{/*
Liveness and readiness probes on the "http" port: GET .live and GET .ready.
*/}}
{{- define "pipecache.httpProbes" -}}
{{- $p := .ctx.Values.probes }}
livenessProbe:
  httpGet:
    path: {{ .live }}
    port: http
  initialDelaySeconds: {{ $p.liveness.initialDelaySeconds }}
  periodSeconds: {{ $p.liveness.periodSeconds }}
  timeoutSeconds: {{ $p.liveness.timeoutSeconds }}
  failureThreshold: {{ $p.liveness.failureThreshold }}
readinessProbe:
  httpGet:
    path: {{ .ready }}
    port: http
  initialDelaySeconds: {{ $p.readiness.initialDelaySeconds }}
  periodSeconds: {{ $p.readiness.periodSeconds }}
  timeoutSeconds: {{ $p.readiness.timeoutSeconds }}
  failureThreshold: {{ $p.readiness.failureThreshold }}
{{- end }}

{{/*
Under-store credentials and region for master and workers, as the standard AWS variables.
The keys are optional in the Secret, so that an existingSecret without them (IRSA, EKS Pod
Identity, instance profiles) leaves the AWS SDK's own credential chain in charge.
*/}}
{{- define "pipecache.awsEnv" -}}
{{- $secret := include "pipecache.secretName" . }}
{{- if or .Values.credentials.existingSecret .Values.credentials.awsAccessKeyId }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.credentials.keys.awsAccessKeyId }}
      optional: true
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.credentials.keys.awsSecretAccessKey }}
      optional: true
{{- end }}
{{- with .Values.ufs.region }}
- name: AWS_DEFAULT_REGION
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{/*
The cluster token every pipecache process carries: masters and workers answer their
control and block APIs only to its holders. A chart-made Secret always has it; an
existingSecret without the key leaves it unset (and the services unguarded).
*/}}
{{- define "pipecache.tokenEnv" -}}
- name: PIPECACHE_CLUSTER_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "pipecache.secretName" . }}
      key: {{ .Values.credentials.keys.clusterToken }}
      {{- if .Values.credentials.existingSecret }}
      optional: true
      {{- end }}
{{- end }}

{{/*
Whether the S3 endpoints (gateway, and workers with worker.s3.enabled) read a tenants file
from the credentials Secret: "true" or empty.
*/}}
{{- define "pipecache.tenants" -}}
{{- if or .Values.gateway.tenants .Values.credentials.tenants }}true{{ end }}
{{- end }}

{{/*
The S3 endpoint's flags, shared by the gateway and workers serving S3 (`--s3-port`): one
region, anonymous access, tenants file and virtual-host domains for every S3 endpoint.
*/}}
{{- define "pipecache.s3Args" -}}
{{- $g := .Values.gateway -}}
- {{ printf "--region=%s" $g.region | quote }}
{{- if $g.anonymous }}
- --anonymous
{{- end }}
{{- if include "pipecache.tenants" . }}
- --tenants=/etc/pipecache/tenants/tenants.yaml
{{- end }}
{{- range $g.domains }}
- {{ printf "--domain=%s" . | quote }}
{{- end }}
{{- end }}

{{/*
The SigV4 key pair of the S3 endpoints (none when gateway.anonymous).
*/}}
{{- define "pipecache.s3KeyEnv" -}}
{{- if not .Values.gateway.anonymous }}
{{- $secret := include "pipecache.secretName" . }}
# The key pair S3 clients sign with (SigV4), read by the CLI from these variables.
- name: PIPECACHE_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.credentials.keys.gatewayAccessKey }}
- name: PIPECACHE_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.credentials.keys.gatewaySecretKey }}
{{- end }}
{{- end }}

{{/*
The tenants file's volume and its mount (nothing without tenants).
*/}}
{{- define "pipecache.tenantsVolume" -}}
{{- if include "pipecache.tenants" . }}
# The tenants file (key pairs, grants, quotas) from the credentials Secret.
- name: tenants
  secret:
    secretName: {{ include "pipecache.secretName" . }}
    items:
      - key: {{ .Values.credentials.keys.tenants }}
        path: tenants.yaml
{{- end }}
{{- end }}

{{- define "pipecache.tenantsMount" -}}
{{- if include "pipecache.tenants" . }}
- name: tenants
  mountPath: /etc/pipecache/tenants
  readOnly: true
{{- end }}
{{- end }}

{{/*
The writable /tmp every container gets (the root filesystem is read-only).
*/}}
{{- define "pipecache.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end }}

{{- define "pipecache.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/*
Scheduling fields of one component. Call with the component's values.
*/}}
{{- define "pipecache.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
What the watcher may do: follow Argo Workflows (Kubeflow Pipelines runs) and record
Kubernetes Events on them ("preloaded 12 objects for step train"), through either events API.
*/}}
{{- define "pipecache.watcherRules" -}}
- apiGroups: ["argoproj.io"]
  resources: ["workflows"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
