{{/*
Names are fixed: the CLI finds the Service `coffer-controller` by name, and
deploy/ (the kustomize base) uses the same ones.
*/}}
{{- define "coffer.name" -}}coffer-controller{{- end -}}

{{- define "coffer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The pod selector; the same as deploy/'s, so the base can be migrated. */}}
{{- define "coffer.selectorLabels" -}}
app.kubernetes.io/name: coffer
app.kubernetes.io/component: controller
{{- end -}}

{{- define "coffer.labels" -}}
app.kubernetes.io/name: coffer
app.kubernetes.io/part-of: coffer
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "coffer.chart" . }}
{{- end -}}

{{- define "coffer.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
