{{/* Names and labels shared by every template. */}}

{{- define "cachefleet.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cachefleet.serviceAccount" -}}
{{- default (include "cachefleet.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "cachefleet.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cachefleet.labels" -}}
{{ include "cachefleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The namespaces whose CacheClusters are watched (a YAML list); empty with allNamespaces. */}}
{{- define "cachefleet.watched" -}}
{{- if .Values.watch.allNamespaces -}}
[]
{{- else if .Values.watch.namespaces -}}
{{ toYaml .Values.watch.namespaces }}
{{- else -}}
{{ list .Release.Namespace | toYaml }}
{{- end -}}
{{- end -}}

{{/* Fixed names the operator's RBAC names (files/rbac-rules.yaml). */}}
{{- define "cachefleet.webhookConfiguration" -}}cachefleet-sidecar-injector{{- end -}}
{{- define "cachefleet.webhookSecret" -}}cachefleet-webhook-tls{{- end -}}
{{- define "cachefleet.leaseName" -}}cachefleet-operator{{- end -}}
{{- define "cachefleet.webhookService" -}}{{ include "cachefleet.fullname" . }}-webhook{{- end -}}
