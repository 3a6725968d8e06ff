{{/* Names, labels and the shared pieces of the pod specs. */}}

{{- define "tributary.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name; the suffixed objects (-worker, -migrations) stay under 63. */}}
{{- define "tributary.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 48 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 48 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 48 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tributary.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of one component: call with (dict "ctx" $ "component" "api"). */}}
{{- define "tributary.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tributary.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Common labels; with a component when one is given. */}}
{{- define "tributary.labels" -}}
{{- $ctx := .ctx | default . -}}
helm.sh/chart: {{ include "tributary.chart" $ctx }}
app.kubernetes.io/name: {{ include "tributary.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
app.kubernetes.io/part-of: tributary
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
{{- end }}

{{- define "tributary.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tributary.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tributary.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}
{{- end }}

{{/* The Secret the chart creates (only what is given inline in the values). */}}
{{- define "tributary.chartSecretName" -}}
{{- include "tributary.fullname" . }}
{{- end }}

{{/* The Secret holding the keyring, JWT secret and OAuth client secrets. */}}
{{- define "tributary.appSecretName" -}}
{{- .Values.secrets.existingSecret | default (include "tributary.chartSecretName" .) }}
{{- end }}

{{/* Does the chart create its own Secret? Only when some secret value is inline. */}}
{{- define "tributary.chartSecretData" -}}
{{- $v := .Values }}
{{- if and $v.database.url (not $v.database.existingSecret) }}
DATABASE_URL: {{ $v.database.url | b64enc | quote }}
{{- end }}
{{- if and $v.queue.url (not $v.queue.existingSecret) }}
TRIBUTARY_QUEUE_URL: {{ $v.queue.url | b64enc | quote }}
{{- end }}
{{- if not $v.secrets.existingSecret }}
{{- with $v.secrets.encryptionKeys }}
TRIBUTARY_ENCRYPTION_KEYS: {{ . | b64enc | quote }}
{{- end }}
{{- with $v.secrets.jwtSecret }}
TRIBUTARY_JWT_SECRET: {{ . | b64enc | quote }}
{{- end }}
{{- with $v.secrets.metricsToken }}
TRIBUTARY_METRICS_TOKEN: {{ . | b64enc | quote }}
{{- end }}
{{- range $vendor := list "hubspot" "salesforce" "zoho" }}
{{- with (index $v.oauth $vendor).clientSecret }}
TRIBUTARY_OAUTH_{{ upper $vendor }}_CLIENT_SECRET: {{ . | b64enc | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Whether a queue URL is configured at all (inline or from a Secret). */}}
{{- define "tributary.hasQueue" -}}
{{- if or .Values.queue.url .Values.queue.existingSecret }}true{{ end }}
{{- end }}

{{/* publicUrl, or the first Ingress host. */}}
{{- define "tributary.publicUrl" -}}
{{- if .Values.publicUrl }}
{{- .Values.publicUrl | trimSuffix "/" }}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts }}
{{- $host := first .Values.ingress.hosts }}
{{- printf "%s://%s" (ternary "https" "http" (gt (len .Values.ingress.tls) 0)) $host }}
{{- end }}
{{- end }}

{{/* TRIBUTARY_SHUTDOWN_GRACE in seconds (the schema allows Ns or Nm). */}}
{{- define "tributary.shutdownGraceSeconds" -}}
{{- $grace := toString .Values.config.shutdownGrace }}
{{- if hasSuffix "m" $grace }}
{{- mul (trimSuffix "m" $grace | atoi) 60 }}
{{- else }}
{{- trimSuffix "s" $grace | atoi }}
{{- end }}
{{- end }}

{{/* terminationGracePeriodSeconds for a component: grace + its preStop pause + margin. */}}
{{- define "tributary.terminationGrace" -}}
{{- $pause := 0 }}
{{- if eq .component "api" }}{{ $pause = int .ctx.Values.api.preStopSleepSeconds }}{{ end }}
{{- add (include "tributary.shutdownGraceSeconds" .ctx | atoi) $pause (int .ctx.Values.config.terminationGraceMarginSeconds) }}
{{- end }}

{{/* Checksums that roll the pods when the settings or the chart's Secret change. */}}
{{- define "tributary.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}

{{/* The secret environment of the api and the worker: only secretKeyRefs, never values. */}}
{{- define "tributary.secretEnv" -}}
{{- $v := .Values -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      {{- if $v.database.existingSecret }}
      name: {{ $v.database.existingSecret }}
      key: {{ $v.database.existingSecretKey }}
      {{- else }}
      name: {{ include "tributary.chartSecretName" . }}
      key: DATABASE_URL
      {{- end }}
{{- if include "tributary.hasQueue" . }}
- name: TRIBUTARY_QUEUE_URL
  valueFrom:
    secretKeyRef:
      {{- if $v.queue.existingSecret }}
      name: {{ $v.queue.existingSecret }}
      key: {{ $v.queue.existingSecretKey }}
      {{- else }}
      name: {{ include "tributary.chartSecretName" . }}
      key: TRIBUTARY_QUEUE_URL
      {{- end }}
{{- end }}
- name: TRIBUTARY_ENCRYPTION_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ include "tributary.appSecretName" . }}
      key: TRIBUTARY_ENCRYPTION_KEYS
- name: TRIBUTARY_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "tributary.appSecretName" . }}
      key: TRIBUTARY_JWT_SECRET
{{- if or $v.secrets.existingSecret $v.secrets.metricsToken }}
- name: TRIBUTARY_METRICS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "tributary.appSecretName" . }}
      key: TRIBUTARY_METRICS_TOKEN
      {{- if $v.secrets.existingSecret }}
      optional: true
      {{- end }}
{{- end }}
{{- range $vendor := list "hubspot" "salesforce" "zoho" }}
{{- if or $v.secrets.existingSecret (index $v.oauth $vendor).clientSecret }}
- name: TRIBUTARY_OAUTH_{{ upper $vendor }}_CLIENT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "tributary.appSecretName" $ }}
      key: TRIBUTARY_OAUTH_{{ upper $vendor }}_CLIENT_SECRET
      {{- if $v.secrets.existingSecret }}
      optional: true
      {{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* The /tmp emptyDir every pod mounts (read-only root filesystem). */}}
{{- define "tributary.tmpVolume" -}}
- name: tmp
  emptyDir:
    {{- with .Values.tmpVolume.sizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
{{- end }}

{{- define "tributary.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* An httpGet probe: (dict "path" "/healthz" "port" "http" "p" .Values.api.probes.liveness). */}}
{{- define "tributary.probe" -}}
httpGet:
  path: {{ .path }}
  port: {{ .port }}
periodSeconds: {{ .p.periodSeconds }}
timeoutSeconds: {{ .p.timeoutSeconds }}
failureThreshold: {{ .p.failureThreshold }}
{{- end }}
