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

{{- /*
Copies the keys of a block that are set (not null) into another under new names, as convert's _given:
(list SOURCE TARGET (list (list THEIRS OURS) ...)). TARGET is a dict, changed in place.
*/ -}}
{{- define "aidaptivcache-finetune.given" -}}
{{- $source := index . 0 -}}
{{- $target := index . 1 -}}
{{- range $pair := index . 2 -}}
{{-   $value := index $source (index $pair 0) -}}
{{-   if not (kindIs "invalid" $value) -}}
{{-     $_ := set $target (index $pair 1) $value -}}
{{-   end -}}
{{- end -}}
{{- end -}}

{{- /*
A 0.3.x block (modelImage, initContainer, outputImage) if it is enabled: "true" when `enabled: true`
(the boolean), "" when absent, null or disabled; fails on a block that is not a mapping, as convert does.
*/ -}}
{{- define "aidaptivcache-finetune.enabled" -}}
{{- $block := index (index . 0) (index . 1) -}}
{{- if not (kindIs "invalid" $block) -}}
{{-   if not (kindIs "map" $block) -}}
{{-     fail (printf "%s: must be a mapping with enabled: true or false" (index . 1)) -}}
{{-   end -}}
{{-   $on := index $block "enabled" -}}
{{-   if and (kindIs "bool" $on) $on -}}true{{- end -}}
{{- end -}}
{{- end -}}
