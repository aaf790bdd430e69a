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
S3 credentials: the Secret holding the shared-credentials file (empty: the AWS chain of
the pod's identity), and where that file is mounted.
*/}}
{{- define "blobgate.s3.secretName" -}}
{{- if .Values.s3.existingSecret }}
{{- .Values.s3.existingSecret }}
{{- else if .Values.s3.accessKeyId }}
{{- printf "%s-s3" (include "blobgate.fullname" .) }}
{{- end }}
{{- end }}

{{- define "blobgate.s3.dir" -}}
/etc/blobgate/aws
{{- end }}

{{/*
Database passwords: each mounted alone from its Secret, the file blobgate reads it from.
*/}}
{{- define "blobgate.harbor.databaseEnabled" -}}
{{- if and .Values.harbor.enabled .Values.harbor.database.enabled }}true{{- end }}
{{- end }}

{{- define "blobgate.harbor.databaseDir" -}}
/etc/blobgate/harbor-database
{{- end }}

{{- define "blobgate.audit.databaseDir" -}}
/etc/blobgate/audit-database
{{- end }}

{{- define "blobgate.copies.dir" -}}
/etc/blobgate/copies
{{- end }}

{{- define "blobgate.feeds.dir" -}}
/etc/blobgate/feeds
{{- end }}

{{- define "blobgate.redis.dir" -}}
/etc/blobgate/redis
{{- end }}

{{- define "blobgate.redisMac.dir" -}}
/etc/blobgate/redis-mac
{{- end }}

{{/*
The admin token: the Secret it comes from (empty: none, the admin endpoints stay
disabled), whether the chart creates it, and where it is mounted.
*/}}
{{- define "blobgate.admin.secretName" -}}
{{- if .Values.admin.existingSecret }}
{{- .Values.admin.existingSecret }}
{{- else if .Values.admin.generateToken }}
{{- printf "%s-admin" (include "blobgate.fullname" .) }}
{{- end }}
{{- end }}

{{- define "blobgate.admin.createSecret" -}}
{{- if and .Values.admin.generateToken (not .Values.admin.existingSecret) }}true{{- end }}
{{- end }}

{{- define "blobgate.admin.dir" -}}
/etc/blobgate/admin
{{- end }}

{{- define "blobgate.adminEnabled" -}}
{{- if ne ((.Values.config.admin | default dict).enabled | toString) "false" }}true{{- end }}
{{- end }}

{{/*
The label that tells the metrics Service apart from the main one (the ServiceMonitor
selects on it).
*/}}
{{- define "blobgate.metricsLabel" -}}
app.kubernetes.io/component: metrics
{{- end }}

{{/*
Harbor's database as a connection string, without the password.
*/}}
{{- define "blobgate.harbor.databaseDSN" -}}
{{- $db := .Values.harbor.database }}
{{- printf "postgresql://%s@%s:%d/%s?sslmode=%s" $db.user (include "blobgate.harbor.databaseHost" .) (int $db.port) $db.name $db.sslmode }}
{{- end }}

{{- define "blobgate.harbor.databaseHost" -}}
{{- default (printf "%s-database.%s.svc" (include "blobgate.harbor.fullname" .) (include "blobgate.harbor.namespace" .)) .Values.harbor.database.host }}
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
{{- if and (eq ($audit.sink | default "log") "postgres") (not $audit.dsn) }}
{{- fail "config.audit.sink is postgres: set config.audit.dsn (without the password) and auditDatabase.secretName for the password" }}
{{- end }}
{{- with $audit.dsn }}
{{- if contains ":" ((urlParse .).userinfo | default "") }}
{{- fail "config.audit.dsn holds a password, which would be stored in a ConfigMap: put it in the Secret named by auditDatabase.secretName" }}
{{- end }}
{{- end }}
{{- if .Values.auditDatabase.secretName }}
{{- $_ := set $audit "dsn_password_file" (printf "%s/password" (include "blobgate.audit.databaseDir" .)) }}
{{- $_ := set $cfg "audit" $audit }}
{{- end }}
{{- if include "blobgate.admin.secretName" . }}
{{- $admin := $cfg.admin | default dict }}
{{- $_ := set $admin "token_file" (printf "%s/token" (include "blobgate.admin.dir" .)) }}
{{- $_ := set $cfg "admin" $admin }}
{{- end }}
{{- $redis := $cfg.redis | default dict }}
{{- if .Values.redisPassword.secretName }}
{{- $_ := set $redis "password_file" (printf "%s/password" (include "blobgate.redis.dir" .)) }}
{{- end }}
{{- with .Values.redisMac.secretName }}
{{- $_ := set $redis "mac_key_file" (printf "%s/%s" (include "blobgate.redisMac.dir" $) $.Values.redisMac.key) }}
{{- $_ := set $redis "mac_previous_key_file" (printf "%s/%s" (include "blobgate.redisMac.dir" $) $.Values.redisMac.previousKey) }}
{{- end }}
{{- if and (or $redis.url $redis.sentinels) (not $redis.mac_key_file) }}
{{- fail "config.redis is set: name the Secret holding the key shared entries are signed with in redisMac.secretName (kubectl create secret generic blobgate-redis-mac --from-literal=mac-key=$(openssl rand -hex 32))" }}
{{- end }}
{{- $_ := set $cfg "redis" $redis }}
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
{{- if include "blobgate.harbor.databaseEnabled" . }}
{{- $membership := $cfg.membership | default dict }}
{{- $_ := set $membership "source" "harbor_db" }}
{{- $_ := set $membership "dsn" (include "blobgate.harbor.databaseDSN" .) }}
{{- $_ := set $membership "dsn_password_file" (printf "%s/password" (include "blobgate.harbor.databaseDir" .)) }}
{{- $_ := set $cfg "membership" $membership }}
{{- end }}
{{- $credentials := .Values.copies.credentials | default dict }}
{{- $storage := $cfg.storage | default dict }}
{{- $copies := list }}
{{- $names := list }}
{{- range $storage.copies | default list }}
{{- $copy := deepCopy . }}
{{- $names = append $names (toString $copy.name) }}
{{- with get $credentials (toString $copy.name) }}
{{- $_ := set $copy "credentials_file" (printf "%s/%s/%s" (include "blobgate.copies.dir" $) $copy.name (.key | default "credentials")) }}
{{- end }}
{{- $copies = append $copies $copy }}
{{- end }}
{{- range $name, $_ := $credentials }}
{{- if not (has $name $names) }}
{{- fail (printf "copies.credentials.%s: no copy of that name in config.storage.copies" $name) }}
{{- end }}
{{- end }}
{{- if $copies }}
{{- $_ := set $storage "copies" $copies }}
{{- $_ := set $cfg "storage" $storage }}
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

{{- define "blobgate.adminPort" -}}
{{- $admin := .Values.config.admin | default dict }}
{{- int (default 9103 $admin.port) }}
{{- end }}

{{/*
The container's environment: where the S3 credentials file is (never a secret value
itself), then extraEnv.
*/}}
{{- define "blobgate.env" -}}
{{- if include "blobgate.s3.secretName" . }}
- name: AWS_SHARED_CREDENTIALS_FILE
  value: {{ include "blobgate.s3.dir" . }}/credentials
{{- end }}
{{- if (.Values.config.tracing | default dict).enabled }}
{{- with .Values.otel }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .endpoint | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ .serviceName | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ .sampler | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .samplerArg | quote }}
{{- with .resourceAttributes }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}
