{{- define "timedeal.name" -}}timedeal-operator{{- end -}}

{{- define "timedeal.labels" -}}
app.kubernetes.io/name: timedeal-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: timedeal
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "timedeal.selector" -}}
app.kubernetes.io/name: timedeal-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "timedeal.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "timedeal.tenantImage" -}}
{{ .Values.tenantImage.repository }}:{{ .Values.tenantImage.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "timedeal.portalLabels" -}}
app.kubernetes.io/name: timedeal-portal
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: timedeal
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "timedeal.portalSelector" -}}
app.kubernetes.io/name: timedeal-portal
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "timedeal.directoryLabels" -}}
app.kubernetes.io/name: timedeal-directory
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: timedeal
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "timedeal.directorySelector" -}}
app.kubernetes.io/name: timedeal-directory
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
