{{/*
Chart name, truncated to the 63 characters Kubernetes allows in names.
*/}}
{{- define "blobgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of this release's objects: "<release>-<chart>", or the release name alone
when it already contains the chart name.
*/}}
{{- define "blobgate.fullname" -}}
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

{{- define "blobgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "blobgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "blobgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "blobgate.labels" -}}
helm.sh/chart: {{ include "blobgate.chart" . }}
{{ include "blobgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "blobgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "blobgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "blobgate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Harbor: its namespace, and the prefix of its object names, following the Harbor chart's
own rule (its fullnameOverride, else the release name when it contains "harbor", else
"<release>-harbor").
*/}}
{{- define "blobgate.harbor.namespace" -}}
{{- default .Release.Namespace .Values.harbor.namespace }}
{{- end }}

{{- define "blobgate.harbor.fullname" -}}
{{- if .Values.harbor.fullnameOverride }}
{{- .Values.harbor.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains "harbor" .Values.harbor.releaseName }}
{{- .Values.harbor.releaseName | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-harbor" .Values.harbor.releaseName | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
Harbor's Secrets can only be mounted from the pod's own namespace.
*/}}
{{- define "blobgate.harbor.checkNamespace" -}}
{{- if and .Values.harbor.enabled (ne (include "blobgate.harbor.namespace" .) .Release.Namespace) }}
{{- if not .Values.tokenCertificate.secretName }}
{{- fail (printf "harbor.namespace is %q but this release is in %q: pods can only mount Secrets of their own namespace. Install blobgate into Harbor's namespace, or copy Harbor's token certificate into this namespace and set tokenCertificate.secretName." (include "blobgate.harbor.namespace" .) .Release.Namespace) }}
{{- end }}
{{- if and .Values.harbor.database.enabled (not .Values.harbor.database.secretName) }}
{{- fail (printf "harbor.namespace is %q but this release is in %q: pods can only read Secrets of their own namespace. Install blobgate into Harbor's namespace, or copy the database password Secret into this namespace and set harbor.database.secretName." (include "blobgate.harbor.namespace" .) .Release.Namespace) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The registry blobgate fronts: config.upstream.url when set, else harbor-core when
harbor.enabled, else blobgate's built-in default.
*/}}
{{- define "blobgate.upstreamURL" -}}
{{- $upstream := .Values.config.upstream | default dict }}
{{- if $upstream.url }}
{{- $upstream.url }}
{{- else if and .Values.harbor.enabled .Values.harbor.internalTLS }}
{{- printf "https://%s-core.%s.svc:443" (include "blobgate.harbor.fullname" .) (include "blobgate.harbor.namespace" .) }}
{{- else if .Values.harbor.enabled }}
{{- printf "http://%s-core.%s.svc:80" (include "blobgate.harbor.fullname" .) (include "blobgate.harbor.namespace" .) }}
{{- else }}
{{- "http://harbor-core:80" }}
{{- end }}
{{- end }}

{{/*
Token certificate: the Secret it comes from, and where it is mounted.
*/}}
{{- define "blobgate.token.secretName" -}}
{{- if .Values.tokenCertificate.secretName }}
{{- .Values.tokenCertificate.secretName }}
{{- else if .Values.harbor.enabled }}
{{- printf "%s-core" (include "blobgate.harbor.fullname" .) }}
{{- else }}
{{- printf "%s-token" (include "blobgate.fullname" .) }}
{{- end }}
{{- end }}

{{- define "blobgate.token.createSecret" -}}
{{- if and .Values.tokenCertificate.pem (not .Values.tokenCertificate.secretName) (not .Values.harbor.enabled) }}true{{- end }}
{{- end }}

{{- define "blobgate.token.dir" -}}
/etc/blobgate/token
{{- end }}

{{- define "blobgate.token.path" -}}
{{- printf "%s/tls.crt" (include "blobgate.token.dir" .) }}
{{- end }}

{{/*
TLS material: the Secret with the CA of the upstream (Harbor's internal TLS: the
harbor-core internal certificate Secret), and where each Secret is mounted.
*/}}
{{- define "blobgate.tls.upstreamCASecret" -}}
{{- if .Values.tls.upstreamCASecret }}
{{- .Values.tls.upstreamCASecret }}
{{- else if and .Values.harbor.enabled .Values.harbor.internalTLS }}
{{- printf "%s-core-internal-tls" (include "blobgate.harbor.fullname" .) }}
{{- end }}
{{- end }}

{{- define "blobgate.tls.dir" -}}
/etc/blobgate/tls
{{- end }}

{{/*
S3 credentials: the Secret they come from (empty: the AWS chain of the pod's identity).
*/}}
{{- define "blobgate.s3.secretName" -}}
{{- if .Values.s3.existingSecret }}
{{- .Values.s3.existingSecret }}
{{- else if .Values.s3.accessKeyId }}
{{- printf "%s-s3" (include "blobgate.fullname" .) }}
{{- end }}
{{- end }}

{{/*
Harbor's database as a connection string; $(HARBOR_DATABASE_PASSWORD) is expanded by
Kubernetes from the variable defined just before BLOBGATE_MEMBERSHIP_DSN.
*/}}
{{- define "blobgate.harbor.databaseDSN" -}}
{{- $db := .Values.harbor.database }}
{{- $host := default (printf "%s-database.%s.svc" (include "blobgate.harbor.fullname" .) (include "blobgate.harbor.namespace" .)) $db.host }}
{{- printf "postgresql://%s:$(HARBOR_DATABASE_PASSWORD)@%s:%d/%s?sslmode=%s" $db.user $host (int $db.port) $db.name $db.sslmode }}
{{- end }}

{{- define "blobgate.harbor.databaseSecretName" -}}
{{- default (printf "%s-database" (include "blobgate.harbor.fullname" .)) .Values.harbor.database.secretName }}
{{- end }}

{{/*
blobgate.yaml: .Values.config with the values the chart derives filled in.
*/}}
{{- define "blobgate.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $metrics := $cfg.metrics | default dict }}
{{- if and (hasKey $metrics "enabled") (not $metrics.enabled) }}
{{- fail "config.metrics.enabled must be true: the liveness and readiness probes use /healthz and /readyz on the metrics port" }}
{{- end }}
{{- $audit := $cfg.audit | default dict }}
{{- if and (eq ($audit.sink | default "log") "postgres") (not $audit.dsn) (not .Values.auditDatabase.secretName) }}
{{- fail "config.audit.sink is postgres: set auditDatabase.secretName to the Secret holding its DSN" }}
{{- end }}
{{- $upstream := $cfg.upstream | default dict }}
{{- $_ := set $upstream "url" (include "blobgate.upstreamURL" .) }}
{{- $_ := set $cfg "upstream" $upstream }}
{{- $auth := $cfg.auth | default dict }}
{{- if not $auth.certificates }}
{{- $_ := set $auth "certificates" (include "blobgate.token.path" .) }}
{{- end }}
{{- $_ := set $cfg "auth" $auth }}
{{- $dir := include "blobgate.tls.dir" . }}
{{- if .Values.tls.serverSecret }}
{{- $server := $cfg.server | default dict }}
{{- $_ := set $server "tls" (merge (dict "cert_file" (printf "%s/server/tls.crt" $dir) "key_file" (printf "%s/server/tls.key" $dir)) ($server.tls | default dict)) }}
{{- $_ := set $cfg "server" $server }}
{{- end }}
{{- if include "blobgate.tls.upstreamCASecret" . }}
{{- $tls := $upstream.tls | default dict }}
{{- $_ := set $tls "ca_file" (printf "%s/upstream-ca/ca.crt" $dir) }}
{{- $_ := set $upstream "tls" $tls }}
{{- end }}
{{- if .Values.tls.s3CASecret }}
{{- $storage := $cfg.storage | default dict }}
{{- $s3 := $storage.s3 | default dict }}
{{- $_ := set $s3 "ca_file" (printf "%s/s3-ca/ca.crt" $dir) }}
{{- $_ := set $storage "s3" $s3 }}
{{- $_ := set $cfg "storage" $storage }}
{{- end }}
{{- if and .Values.harbor.enabled .Values.harbor.database.enabled }}
{{- $membership := $cfg.membership | default dict }}
{{- $_ := set $membership "source" "harbor_db" }}
{{- $_ := set $cfg "membership" $membership }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
Port numbers from the configuration, with blobgate's defaults.
*/}}
{{- define "blobgate.httpPort" -}}
{{- $server := .Values.config.server | default dict }}
{{- int (default 5080 $server.port) }}
{{- end }}

{{- define "blobgate.metricsPort" -}}
{{- $metrics := .Values.config.metrics | default dict }}
{{- int (default 9102 $metrics.port) }}
{{- end }}

{{/*
The container's environment: S3 credentials, Harbor's database, the audit DSN, then
extraEnv. The password variable comes before the DSN that refers to it as
$(HARBOR_DATABASE_PASSWORD).
*/}}
{{- define "blobgate.env" -}}
{{- with include "blobgate.s3.secretName" . }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.s3.accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.s3.secretAccessKeyKey }}
{{- end }}
{{- if and .Values.harbor.enabled .Values.harbor.database.enabled }}
- name: HARBOR_DATABASE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "blobgate.harbor.databaseSecretName" . }}
      key: {{ .Values.harbor.database.passwordKey }}
- name: BLOBGATE_MEMBERSHIP_DSN
  value: {{ include "blobgate.harbor.databaseDSN" . | quote }}
{{- end }}
{{- with .Values.auditDatabase.secretName }}
- name: BLOBGATE_AUDIT_DSN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.auditDatabase.key }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}
