{{/*
Names and labels.
*/}}
{{- define "flowgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flowgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "flowgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flowgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flowgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "flowgate.labels" -}}
helm.sh/chart: {{ include "flowgate.chart" . }}
{{ include "flowgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: flowgate
{{- end }}

{{/*
Component labels; call with (dict "root" $ "component" "proxy").
*/}}
{{- define "flowgate.componentSelectorLabels" -}}
{{ include "flowgate.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "flowgate.componentLabels" -}}
{{ include "flowgate.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "flowgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "flowgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "flowgate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Service names (also used in the proxy's URLs of its peers).
*/}}
{{- define "flowgate.componentName" -}}
{{- printf "%s-%s" (include "flowgate.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Where each secret value comes from.
*/}}
{{- define "flowgate.authSecretName" -}}
{{- if .Values.auth.existingSecret }}
{{- .Values.auth.existingSecret }}
{{- else }}
{{- printf "%s-auth" (include "flowgate.fullname" .) }}
{{- end }}
{{- end }}

{{- define "flowgate.databaseSecretName" -}}
{{- if .Values.postgresql.bundled }}
{{- printf "%s-postgresql" (include "flowgate.fullname" .) }}
{{- else if .Values.postgresql.existingSecret }}
{{- .Values.postgresql.existingSecret }}
{{- else }}
{{- fail "postgresql.existingSecret (a Secret holding DATABASE_URL) is required when postgresql.bundled is false" }}
{{- end }}
{{- end }}

{{- define "flowgate.databaseSecretKey" -}}
{{- if .Values.postgresql.bundled }}database-url{{ else }}{{ .Values.postgresql.existingSecretKey }}{{ end }}
{{- end }}

{{- define "flowgate.redisSecretName" -}}
{{- if .Values.redis.bundled }}
{{- printf "%s-redis" (include "flowgate.fullname" .) }}
{{- else if .Values.redis.existingSecret }}
{{- .Values.redis.existingSecret }}
{{- else }}
{{- fail "redis.existingSecret (a Secret holding REDIS_URL) is required when redis.bundled is false" }}
{{- end }}
{{- end }}

{{- define "flowgate.redisSecretKey" -}}
{{- if .Values.redis.bundled }}redis-url{{ else }}{{ .Values.redis.existingSecretKey }}{{ end }}
{{- end }}

{{/*
A value kept across upgrades: the existing Secret's key if the release already has it, else the
explicit value, else a new random one. Call with (dict "root" $ "secret" NAME "key" KEY "value" V).
`lookup` returns nothing under `helm template`, so offline renders always show a fresh value.
*/}}
{{- define "flowgate.persistentSecretValue" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret }}
{{- if and $existing $existing.data (hasKey $existing.data .key) }}
{{- index $existing.data .key | b64dec }}
{{- else if .value }}
{{- .value }}
{{- else }}
{{- randAlphaNum 40 }}
{{- end }}
{{- end }}

{{/*
The environment every Flowgate container gets. Call with (dict "root" $ "component" C "svc" V).
*/}}
{{- define "flowgate.env" -}}
{{- $root := .root -}}
- name: SERVICE_TYPE
  value: {{ .component | quote }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "flowgate.databaseSecretName" $root }}
      key: {{ include "flowgate.databaseSecretKey" $root }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "flowgate.redisSecretName" $root }}
      key: {{ include "flowgate.redisSecretKey" $root }}
- name: ADMIN_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "flowgate.authSecretName" $root }}
      key: {{ $root.Values.auth.adminApiKeyKey }}
- name: FLOWGATE__SECURITY__KEY_HASH_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "flowgate.authSecretName" $root }}
      key: {{ $root.Values.auth.keyHashSecretKey }}
{{- /* Every internal gRPC call (proxy -> api-server, compliance, policy) carries this token. */}}
- name: FLOWGATE__SECURITY__INTERNAL_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "flowgate.authSecretName" $root }}
      key: {{ $root.Values.auth.internalTokenKey }}
{{- /* The KEK of provider credentials: only the services that seal or open them. */}}
{{- if and $root.Values.credentials.kekSecret (has .component (list "proxy" "api-server")) }}
- name: FLOWGATE_KEK
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.credentials.kekSecret }}
      key: {{ $root.Values.credentials.kekSecretKey }}
{{- end }}
{{- /* The binary binds 127.0.0.1 unless told otherwise; a pod is reached on its pod IP. */}}
- name: FLOWGATE__SERVER__HOST
  value: "0.0.0.0"
- name: FLOWGATE_CONFIG
  value: /etc/flowgate/config.yaml
- name: FLOWGATE_DATA_DIR
  value: /data
- name: LOG_FORMAT
  value: json
- name: LOG_LEVEL
  value: {{ $root.Values.logLevel | quote }}
- name: {{ printf "FLOWGATE__%s__PORT" (.component | upper | replace "-" "_") }}
  value: {{ .svc.port | quote }}
{{- /* Peer URLs (gRPC and HTTP share each port): the proxy calls all three; the api-server's
health overview checks compliance and policy at the same URLs. */}}
- name: FLOWGATE__PROXY__API_SERVER_URL
  value: {{ printf "http://%s:%v" (include "flowgate.componentName" (dict "root" $root "component" "api-server")) $root.Values.apiServer.port | quote }}
- name: FLOWGATE__PROXY__COMPLIANCE_URL
  value: {{ printf "http://%s:%v" (include "flowgate.componentName" (dict "root" $root "component" "compliance")) $root.Values.compliance.port | quote }}
- name: FLOWGATE__PROXY__POLICY_URL
  value: {{ printf "http://%s:%v" (include "flowgate.componentName" (dict "root" $root "component" "policy")) $root.Values.policy.port | quote }}
{{- if eq .component "proxy" }}
- name: FLOWGATE__PROXY__TRUSTED_PROXIES
  value: {{ .svc.trustedProxies | quote }}
{{- end }}
{{- with $root.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- with .svc.env }}
{{ toYaml . }}
{{- end }}
{{- end }}
