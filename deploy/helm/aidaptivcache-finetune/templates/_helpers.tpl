{{- /*
The FineTuneJob's name: job.name, else the release name (as `finetune-operator convert --name`).
*/ -}}
{{- define "aidaptivcache-finetune.name" -}}
{{- $job := index .Values "job" -}}
{{- $name := "" -}}
{{- if kindIs "map" $job -}}
{{-   $name = index $job "name" -}}
{{- end -}}
{{- $name | default .Release.Name | toString -}}
{{- end -}}
