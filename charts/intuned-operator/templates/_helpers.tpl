{{/*
Names and labels. Object names are "<fullname>-<the name in config/>", so a
release named intuned-operator gets exactly the names of dist/install.yaml.
*/}}

{{- define "intuned-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "intuned-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "intuned-operator.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Labels Helm's tooling expects. test/chart drops exactly these (and
kustomize's managed-by) when it compares the chart with dist/install.yaml.
*/}}
{{- define "intuned-operator.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The label every object of config/ has. */}}
{{- define "intuned-operator.nameLabel" -}}
app.kubernetes.io/name: {{ include "intuned-operator.name" . }}
{{- end }}

{{/*
The manager's selector, as in config/manager. A Deployment's selector cannot
change: keeping it equal to the kustomize install's lets a kustomize install
move to Helm (docs/helm.md) without deleting the Deployment.
*/}}
{{- define "intuned-operator.selectorLabels" -}}
control-plane: controller-manager
{{ include "intuned-operator.nameLabel" . }}
{{- end }}

{{- define "intuned-operator.labels" -}}
{{ include "intuned-operator.nameLabel" . }}
{{ include "intuned-operator.helmLabels" . }}
{{- end }}

{{- define "intuned-operator.managerLabels" -}}
control-plane: controller-manager
{{ include "intuned-operator.labels" . }}
{{- end }}

{{- define "intuned-operator.serviceAccountName" -}}
{{ include "intuned-operator.fullname" . }}-controller-manager
{{- end }}

{{/* The RoleBinding in each watched namespace (--access-role-binding). */}}
{{- define "intuned-operator.accessRoleBinding" -}}
{{ include "intuned-operator.fullname" . }}-manager-rolebinding
{{- end }}

{{/* repository:tag, or repository:tag@digest with a digest. */}}
{{- define "intuned-operator.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- if .Values.image.digest }}
{{- $ref = printf "%s@%s" $ref .Values.image.digest }}
{{- end }}
{{- $ref }}
{{- end }}

{{/* The ServiceAccount as an RBAC subject. */}}
{{- define "intuned-operator.subject" -}}
- kind: ServiceAccount
  name: {{ include "intuned-operator.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{/*
The ClusterRoleBinding of the receivers' ServiceAccounts to
system:auth-delegator (receiver-read-auth.yaml).
*/}}
{{- define "intuned-operator.readAuthBinding" -}}
{{ include "intuned-operator.fullname" . }}-receiver-auth-delegator
{{- end }}
