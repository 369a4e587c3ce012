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

{{/*
What the controller needs in each namespace it reconciles: read
SealedSecrets and patch their status, read and write the Secrets they name
(RBAC cannot scope by label), publish Events. A ClusterRole with these
rules when `namespaces` is empty, else a Role per listed namespace. Keep in
step with deploy/rbac.yaml's ClusterRole and
deploy/namespaced/watched/rbac.yaml (tests/support/tests/deploy.rs checks).
*/}}
{{- define "coffer.unsealRules" -}}
- apiGroups: ["coffer.dev"]
  resources: ["sealedsecrets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["coffer.dev"]
  resources: ["sealedsecrets/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "update", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}
