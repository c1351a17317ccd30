{{/* Labels every object carries: the kustomization's (name, component) plus Helm's own. */}}
{{- define "modelrollout.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* metadata.labels of an object of component `.component` (root context in `.root`). */}}
{{- define "modelrollout.labels" -}}
app.kubernetes.io/name: modelrollout
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{ include "modelrollout.helmLabels" .root }}
{{- end -}}

{{/* Selector labels (also the pod template's labels): unchanged by chart upgrades, as selectors are immutable. */}}
{{- define "modelrollout.selector" -}}
app.kubernetes.io/name: modelrollout
app.kubernetes.io/component: {{ . }}
{{- end -}}

{{- define "modelrollout.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The restricted Pod Security profile both workloads run under. */}}
{{- define "modelrollout.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{- define "modelrollout.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end -}}

{{/* nodeSelector, tolerations, affinity and imagePullSecrets of a pod spec; `.values` is the component's values. */}}
{{- define "modelrollout.scheduling" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
