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

{{/*
The provider of kek.reference (transit, pkcs11 or awskms), empty without a
KEK. Fails, naming the value, on what the controller would refuse at start:
a reference that is not PROVIDER:KEY, an unknown provider, and a provider
whose required settings are missing.
*/}}
{{- define "coffer.kekProvider" -}}
{{- $kek := .Values.kek | default dict -}}
{{- with $kek.reference -}}
{{- $ref := . -}}
{{- $provider := regexReplaceAll ":.*$" $ref "" -}}
{{- if or (not (contains ":" $ref)) (eq (trimPrefix (printf "%s:" $provider) $ref) "") -}}
{{- fail (printf "kek.reference %q: expected PROVIDER:KEY (transit:NAME, pkcs11:LABEL or awskms:KEY)" $ref) -}}
{{- end -}}
{{- if not (has $provider (list "transit" "pkcs11" "awskms")) -}}
{{- fail (printf "kek.reference %q: unknown provider %q, expected transit, pkcs11 or awskms" $ref $provider) -}}
{{- end -}}
{{- if eq $provider "transit" -}}
{{- $transit := $kek.transit | default dict -}}
{{- if not $transit.address -}}
{{- fail (printf "kek.reference %q needs kek.transit.address (the OpenBao/Vault server, https://HOST[:PORT])" $ref) -}}
{{- end -}}
{{- if and $transit.kubernetesRole $transit.tokenSecret -}}
{{- fail "kek.transit.kubernetesRole and kek.transit.tokenSecret are two ways to log in: set one" -}}
{{- end -}}
{{- if not (or $transit.kubernetesRole $transit.tokenSecret) -}}
{{- fail (printf "kek.reference %q needs kek.transit.kubernetesRole (log in with the controller's ServiceAccount token) or kek.transit.tokenSecret (a Secret with an OpenBao/Vault token)" $ref) -}}
{{- end -}}
{{- end -}}
{{- if eq $provider "pkcs11" -}}
{{- $pkcs11 := $kek.pkcs11 | default dict -}}
{{- range $value, $what := dict "module" "the module's path in the container" "token" "the token's label" "pinSecret" "a Secret with the user PIN under the key `pin`" -}}
{{- if not (get $pkcs11 $value) -}}
{{- fail (printf "kek.reference %q needs kek.pkcs11.%s (%s)" $ref $value $what) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $provider -}}
{{- end -}}
{{- end -}}

{{/* Where the chart mounts the KEK's Secrets: one directory each, read-only. */}}
{{- define "coffer.kekPinDir" -}}/run/secrets/coffer-kek-pin{{- end -}}
{{- define "coffer.kekCaDir" -}}/run/secrets/coffer-kek-ca{{- end -}}
{{- define "coffer.kekTokenDir" -}}/run/secrets/coffer-kek-token{{- end -}}
