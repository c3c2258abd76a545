{{/* Names and labels shared by every template. */}}

{{- define "aeo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name: the release name alone when it already contains the chart name. */}}
{{- define "aeo.fullname" -}}
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

{{- define "aeo.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "aeo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aeo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "aeo.labels" -}}
helm.sh/chart: {{ include "aeo.chart" . }}
{{ include "aeo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: atlas-encryption-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "aeo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "aeo.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "aeo.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/*
Leader election: on when replicaCount > 1 (two active operators would race on Atlas), otherwise as
leaderElection.enabled says (default off). Renders "true" or "false".
*/}}
{{- define "aeo.leaderElect" -}}
{{- $replicas := int .Values.replicaCount -}}
{{- $enabled := .Values.leaderElection.enabled -}}
{{- if gt $replicas 1 -}}
{{- if and (kindIs "bool" $enabled) (not $enabled) -}}
{{- fail (printf "leaderElection.enabled=false with replicaCount=%d: several operators without a Lease would all write to Atlas; set replicaCount: 1 or leave leaderElection.enabled unset" $replicas) -}}
{{- end -}}
true
{{- else if and (kindIs "bool" $enabled) $enabled -}}
true
{{- else -}}
false
{{- end -}}
{{- end -}}

{{- define "aeo.leaseNamespace" -}}
{{- default .Release.Namespace .Values.leaderElection.namespace -}}
{{- end -}}

{{/* The namespaces watched, comma-separated (empty: all), as WATCH_NAMESPACES takes them. */}}
{{- define "aeo.watchNamespaces" -}}
{{- join "," (uniq .Values.watchNamespaces) -}}
{{- end -}}

{{/*
The rules the operator needs on its own kinds, Secrets and Events. Used by the ClusterRole
(all namespaces) or by one Role per watched namespace. Secrets: get only; they are read on demand
when an object names them, never listed or watched.
*/}}
{{- define "aeo.operatorRules" -}}
- apiGroups: ["encryption.atlasops.dev"]
  resources: ["projectencryptions", "clusterencryptions"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["encryption.atlasops.dev"]
  resources: ["projectencryptions/status", "clusterencryptions/status"]
  verbs: ["get", "patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}
