{{/* The release's name for its objects, cut to Kubernetes' 63 characters. */}}
{{- define "flashsale.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "flashsale.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selector labels of one role (call with dict "root" $ "role" name). */}}
{{- define "flashsale.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{/* The Secret holding the secret settings. */}}
{{- define "flashsale.secretName" -}}
{{- .Values.secret.existingSecret | default (printf "%s-secret" (include "flashsale.fullname" .)) -}}
{{- end -}}

{{/* The environment variable of a flag: FLASHSALE_ + upper case, - as _. */}}
{{- define "flashsale.env" -}}
{{- printf "FLASHSALE_%s" (. | upper | replace "-" "_") -}}
{{- end -}}
