{{/*
The name of the controller's objects (Deployment, Service, ServiceAccount,
roles, bindings, NetworkPolicy, PodDisruptionBudget, ServiceMonitor) and of
its leader Lease: `coffer-controller`, as in deploy/ (the kustomize base),
which is also the Service name the CLI looks for; or fullnameOverride (then
tell the CLI with --controller-name). The recipients ConfigMap
`coffer-recipients` and the Role `coffer-recipients-reader` keep their names:
the controller and the CLI know the ConfigMap by that name only.
*/}}
{{- define "coffer.fullname" -}}
{{- default "coffer-controller" .Values.fullnameOverride -}}
{{- end -}}

{{/* The ServiceAccount the controller runs as (and the bindings name). */}}
{{- define "coffer.serviceAccountName" -}}
{{- default (include "coffer.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

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

{{/* repository@digest when image.digest is set (the tag is then ignored), else repository:tag. */}}
{{- define "coffer.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
What the controller needs in each namespace it reconciles: read
SealedSecrets and patch their status, read and write the Secrets they name
(RBAC cannot scope by label), publish Events. A ClusterRole with these
rules when `namespaces` is empty, else a Role per listed namespace. Keep in
step with deploy/rbac.yaml's ClusterRole and
deploy/namespaced/watched/rbac.yaml (tests/deploy/tests/deploy.rs checks).
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
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- if .Values.bitnami.enabled }}
- apiGroups: ["bitnami.com"]
  resources: ["sealedsecrets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["bitnami.com"]
  resources: ["sealedsecrets/status"]
  verbs: ["patch"]
{{- end }}
{{- end -}}
