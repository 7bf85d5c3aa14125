{{/*
Names, labels and small computed values shared by the templates.
*/}}

{{/* The chart's name, or nameOverride. */}}
{{- define "agentpersistence.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The base name of every object: fullnameOverride, or <release>-<chart> (once). */}}
{{- define "agentpersistence.fullname" -}}
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

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "agentpersistence.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "agentpersistence.labels" -}}
helm.sh/chart: {{ include "agentpersistence.chart" . }}
{{ include "agentpersistence.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: agentpersistence
{{- end }}

{{/* Labels that select the operator's pod. */}}
{{- define "agentpersistence.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agentpersistence.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The operator's ServiceAccount. */}}
{{- define "agentpersistence.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "agentpersistence.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag or repository@digest of an image block; the tag defaults to appVersion. */}}
{{- define "agentpersistence.image" -}}
{{- $image := index . 0 }}
{{- $root := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/* The webhook's Service, Secret and configuration names. */}}
{{- define "agentpersistence.webhookServiceName" -}}
{{- printf "%s-webhook" (include "agentpersistence.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agentpersistence.webhookSecretName" -}}
{{- printf "%s-webhook-tls" (include "agentpersistence.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agentpersistence.webhookCertificateName" -}}
{{- printf "%s-webhook" (include "agentpersistence.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The DNS names the webhook certificate is valid for (the Service's). */}}
{{- define "agentpersistence.webhookDnsNames" -}}
{{- $service := include "agentpersistence.webhookServiceName" . }}
{{- $namespace := .Release.Namespace }}
{{- list $service (printf "%s.%s" $service $namespace) (printf "%s.%s.svc" $service $namespace) (printf "%s.%s.svc.%s" $service $namespace .Values.clusterDomain) | toJson }}
{{- end }}

{{/*
The URL paths of the webhook's two entries, one per opt-in route: kopf serves each admission
handler at /<handler id> (agentpersistence.operator.webhook.handlers.WEBHOOK_PATH and
NAMESPACE_WEBHOOK_PATH), and runs only that handler.
*/}}
{{- define "agentpersistence.webhookPath" -}}
/inject-sidecar
{{- end }}

{{- define "agentpersistence.namespaceWebhookPath" -}}
/inject-sidecar-namespace
{{- end }}

{{/*
What the webhook's entries share, all but their name and selectors: the operator's Service
at the entry's path, pod creations only, and the API server's policies.
Called with (dict "root" $ "path" <URL path> "caBundle" <base64 PEM; empty for cert-manager>).
*/}}
{{- define "agentpersistence.webhookEntry" -}}
admissionReviewVersions: ["v1"]
clientConfig:
  service:
    name: {{ include "agentpersistence.webhookServiceName" .root }}
    namespace: {{ .root.Release.Namespace }}
    port: {{ .root.Values.webhook.servicePort }}
    path: {{ .path }}
  {{- if .caBundle }}
  caBundle: {{ .caBundle }}
  {{- end }}
rules:
  - apiGroups: [""]
    apiVersions: ["v1"]
    resources: ["pods"]
    operations: ["CREATE"]
    scope: Namespaced
matchPolicy: Equivalent
sideEffects: None
timeoutSeconds: {{ .root.Values.webhook.timeoutSeconds }}
failurePolicy: {{ .root.Values.webhook.failurePolicy }}
# Called again when a later webhook changed the pod; the injection is idempotent.
reinvocationPolicy: IfNeeded
{{- end }}

{{/*
The namespaceSelector expressions of every entry: never the excluded namespaces (the
release's own among them), and only the watched ones when operator.watchNamespaces lists them.
*/}}
{{- define "agentpersistence.webhookNamespaceExpressions" -}}
- key: kubernetes.io/metadata.name
  operator: NotIn
  values: {{ include "agentpersistence.excludedNamespaces" . }}
{{- with .Values.operator.watchNamespaces }}
- key: kubernetes.io/metadata.name
  operator: In
  values: {{ toJson . }}
{{- end }}
{{- end }}

{{/* "true" or "false": whether injected sidecars are native (see sidecar.nativeSidecars). */}}
{{- define "agentpersistence.nativeSidecars" -}}
{{- $wanted := toString .Values.sidecar.nativeSidecars }}
{{- if eq $wanted "auto" }}
{{- semverCompare ">=1.29.0-0" .Capabilities.KubeVersion.Version | toString }}
{{- else }}
{{- $wanted }}
{{- end }}
{{- end }}

{{/* Namespaces the webhook never sees: the release's own, then webhook.excludedNamespaces. */}}
{{- define "agentpersistence.excludedNamespaces" -}}
{{- prepend (without .Values.webhook.excludedNamespaces .Release.Namespace) .Release.Namespace | toJson }}
{{- end }}
