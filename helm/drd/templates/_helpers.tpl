{{/*
Names, labels and the generated drd.yaml. Paths inside the pod are fixed here so that
the config, the volumes and the image agree: /etc/drd/drd.yaml (DRD_CONFIG),
/etc/drd/tiers, /run/secrets/drd, /var/lib/drd (state_dir).
*/}}

{{- define "drd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "drd.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "drd.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "drd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "drd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "drd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "drd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "drd.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "drd.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if hasPrefix "@" $tag -}}
{{- printf "%s%s" .Values.image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end }}

{{- define "drd.drillRbac" -}}
{{- if and .Values.drills.kubernetes.enabled .Values.rbac.create }}true{{ end }}
{{- end }}

{{/*
Checks values.schema.json cannot express, with messages that say what to do.
*/}}
{{- define "drd.validate" -}}
{{- if not .Values.catalog.url }}
{{- fail "catalog.url is required: drd runs here with a PostgreSQL catalog (postgresql://USER@HOST:PORT/DBNAME, no password). The pods' state directory is an emptyDir, and replicas elect their leader through the catalog." }}
{{- end }}
{{- if and .Values.catalog.passwordKey (not .Values.secrets.existingSecret) }}
{{- fail (printf "catalog.passwordKey is %q but secrets.existingSecret is empty: name the Secret that holds the catalog password (or set catalog.passwordKey to \"\" when the catalog needs none)" .Values.catalog.passwordKey) }}
{{- end }}
{{- with .Values.config.daemon }}
{{- range $key := list "listen_host" "listen_port" }}
{{- if hasKey $.Values.config.daemon $key }}
{{- fail (printf "config.daemon.%s is set by the chart (0.0.0.0 and service.port): remove it" $key) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.prometheusRule.enabled (not .Values.prometheusRule.runbookBaseUrl) }}
{{- fail "prometheusRule.runbookBaseUrl is required when prometheusRule.enabled: the URL where drd's runbooks/ directory is published (each alert links to one of its files)" }}
{{- end }}
{{- end }}

{{/*
drd.yaml: the user's estate (config) plus the settings the chart owns.
*/}}
{{- define "drd.config" -}}
{{- $c := deepCopy (.Values.config | default dict) -}}
{{- $_ := set $c "version" 1 -}}
{{- $_ := set $c "state_dir" "/var/lib/drd" -}}
{{- $_ := set $c "tiers_dir" "/etc/drd/tiers" -}}
{{- $_ := set $c "catalog" .Values.catalog.url -}}
{{- if .Values.catalog.passwordKey -}}
{{- $_ := set $c "catalog_password" (dict "file" (printf "/run/secrets/drd/%s" .Values.catalog.passwordKey)) -}}
{{- end -}}
{{- $_ := set $c "log" (merge (deepCopy ($c.log | default dict)) (dict "format" "json")) -}}
{{- $_ := set $c "daemon" (merge (dict "listen_host" "0.0.0.0" "listen_port" (int .Values.service.port)) (deepCopy ($c.daemon | default dict))) -}}
{{- if .Values.drills.kubernetes.enabled -}}
{{- $_ := set $c "kubernetes" (merge (deepCopy ($c.kubernetes | default dict)) (dict "image" (include "drd.image" .))) -}}
{{- end -}}
{{- toYaml $c -}}
{{- end }}

{{/*
Tiers as {name: YAML text}: the shipped ones (files/tiers, the repository's tiers/),
then .Values.tiers (a mapping or a YAML string each), which may replace them by name.
*/}}
{{- define "drd.tiers" -}}
{{- $tiers := dict -}}
{{- if .Values.includeDefaultTiers -}}
{{- range $path, $_ := .Files.Glob "files/tiers/*.yaml" -}}
{{- $_ := set $tiers (base $path | trimSuffix ".yaml") ($.Files.Get $path) -}}
{{- end -}}
{{- end -}}
{{- range $name, $tier := .Values.tiers -}}
{{- $_ := set $tiers $name (ternary $tier (toYaml $tier) (kindIs "string" $tier)) -}}
{{- end -}}
{{- toYaml $tiers -}}
{{- end }}

{{/*
The ConfigMap's data: drd.yaml and one tiers.NAME.yaml per tier (mounted as
/etc/drd/tiers/NAME.yaml). Also hashed into the pod template, so a change rolls the pods.
*/}}
{{- define "drd.configMapData" -}}
drd.yaml: |
  {{- include "drd.config" . | nindent 2 }}
{{- range $name, $body := include "drd.tiers" . | fromYaml }}
tiers.{{ $name }}.yaml: |
  {{- $body | trimSuffix "\n" | nindent 2 }}
{{- end }}
{{- end }}

{{/* Cluster-scoped objects carry the namespace: two releases of the same name may exist. */}}
{{- define "drd.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "drd.fullname" .) | trimPrefix "-" | trunc 200 | trimSuffix "-" }}
{{- end }}
