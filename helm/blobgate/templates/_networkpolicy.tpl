{{/*
NetworkPolicy egress: one rule per destination blobgate talks to (DNS, the upstream
registry, the databases in use, Redis, storage), each scoped to where that destination
is, then networkPolicy.egress.extra. Every ipBlock then passes "blobgate.networkPolicy.guard",
which keeps link-local metadata endpoints out unless networkPolicy.egress.instanceMetadata.
*/}}
{{- define "blobgate.networkPolicy.egress" -}}
{{- $e := .Values.networkPolicy.egress }}
{{- if not $e.dns }}
{{- fail "networkPolicy.egress.dns is empty: name the DNS servers (a rule without peers would open port 53 to every address)" }}
{{- end }}
{{- if hasKey $e "s3" }}
{{- fail "networkPolicy.egress.s3 is now networkPolicy.egress.storage (it serves every storage backend)" }}
{{- end }}
{{- $rules := list (dict "to" $e.dns "ports" (list (dict "port" 53 "protocol" "UDP") (dict "port" 53 "protocol" "TCP"))) }}
{{- $rules = append $rules (include "blobgate.networkPolicy.upstream" . | fromYaml) }}
{{- with include "blobgate.networkPolicy.database" . }}
{{- $rules = append $rules (fromYaml .) }}
{{- end }}
{{- with include "blobgate.networkPolicy.redis" . }}
{{- $rules = append $rules (fromYaml .) }}
{{- end }}
{{- if ne ((.Values.config.storage | default dict).backend | default "s3") "proxy" }}
{{- $rules = append $rules (dict "to" $e.storage.to "ports" $e.storage.ports) }}
{{- end }}
{{- if $e.instanceMetadata }}
{{- $metadata := list (dict "ipBlock" (dict "cidr" "169.254.169.254/32")) (dict "ipBlock" (dict "cidr" "fd00:ec2::254/128")) }}
{{- $rules = append $rules (dict "to" $metadata "ports" (list (dict "port" 80 "protocol" "TCP"))) }}
{{- end }}
{{- $rules = concat $rules $e.extra }}
{{- range $rules }}
{{- if or (not .to) (not .ports) }}
{{- fail (printf "networkPolicy.egress: every rule needs destinations (to) and ports; an empty or missing one means every address or every port, the metadata endpoint included (rule: %s). Write {ipBlock: {cidr: 0.0.0.0/0}} to mean the internet" (toJson .)) }}
{{- end }}
{{- end }}
{{- if not $e.instanceMetadata }}
{{- $rules = (include "blobgate.networkPolicy.guard" (dict "rules" $rules) | fromYaml).rules }}
{{- end }}
{{- toYaml $rules }}
{{- end }}

{{/*
The peers of the hosts in a list (see "blobgate.networkPolicy.peersOf").
*/}}
{{- define "blobgate.networkPolicy.peersOfHosts" -}}
{{- $root := index . 0 }}
{{- $peers := list }}
{{- range index . 1 }}
{{- $peers = concat $peers (include "blobgate.networkPolicy.peersOf" (list $root .) | fromYamlArray) }}
{{- end }}
{{- toYaml (uniq $peers) }}
{{- end }}

{{/*
Where a host name or address blobgate is configured with lives, as NetworkPolicyPeers:
an address is itself; a one-label name ("harbor-core") is a Service of this namespace;
"<svc>.<namespace>.svc[.<cluster domain>]" is in <namespace>; any other name is outside
the cluster, somewhere on the IPv4 internet (narrow it with the rule's "to").
*/}}
{{- define "blobgate.networkPolicy.peersOf" -}}
{{- $host := index . 1 | trimPrefix "[" | trimSuffix "]" }}
{{- $labels := splitList "." $host }}
{{- if regexMatch "^[0-9]+(\\.[0-9]+){3}$" $host }}
- ipBlock:
    cidr: {{ $host }}/32
{{- else if contains ":" $host }}
- ipBlock:
    cidr: {{ $host }}/128
{{- else if eq (len $labels) 1 }}
- podSelector: {}
{{- else if and (ge (len $labels) 3) (eq (index $labels 2) "svc") }}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ index $labels 1 }}
{{- else }}
- ipBlock:
    cidr: 0.0.0.0/0
{{- end }}
{{- end }}

{{/*
The host of a URL or DSN, without port or brackets.
*/}}
{{- define "blobgate.networkPolicy.hostOf" -}}
{{- regexReplaceAll ":[0-9]+$" (urlParse .).host "" | trimPrefix "[" | trimSuffix "]" }}
{{- end }}

{{/*
Harbor's pods of one component, as a NetworkPolicyPeer (labels every Harbor chart
version sets: release and component).
*/}}
{{- define "blobgate.networkPolicy.harborPods" -}}
{{- $root := index . 0 }}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ include "blobgate.harbor.namespace" $root }}
  podSelector:
    matchLabels:
      release: {{ $root.Values.harbor.releaseName }}
      component: {{ index . 1 }}
{{- end }}

{{- define "blobgate.networkPolicy.upstream" -}}
{{- $u := .Values.networkPolicy.egress.upstream }}
{{- $harborCore := and .Values.harbor.enabled (not (.Values.config.upstream | default dict).url) }}
{{- $url := urlParse (include "blobgate.upstreamURL" .) }}
{{- $to := $u.to }}
{{- if and (not $to) $harborCore }}
{{- $to = include "blobgate.networkPolicy.harborPods" (list . "core") | fromYamlArray }}
{{- else if not $to }}
{{- $to = include "blobgate.networkPolicy.peersOfHosts" (list . (list (include "blobgate.networkPolicy.hostOf" (include "blobgate.upstreamURL" .)))) | fromYamlArray }}
{{- end }}
{{- $ports := $u.ports }}
{{- if and (not $ports) $harborCore }}
{{- $ports = list (dict "port" (ternary 8443 8080 .Values.harbor.internalTLS) "protocol" "TCP") }}
{{- else if not $ports }}
{{- $port := regexFind "[0-9]+$" (regexFind ":[0-9]+$" $url.host) | default (ternary "443" "80" (eq $url.scheme "https")) }}
{{- $ports = list (dict "port" (int $port) "protocol" "TCP") }}
{{- end }}
{{- toYaml (dict "to" $to "ports" $ports) }}
{{- end }}

{{- define "blobgate.networkPolicy.database" -}}
{{- $d := .Values.networkPolicy.egress.database }}
{{- $harbor := include "blobgate.harbor.databaseEnabled" . }}
{{- $audit := .Values.config.audit | default dict }}
{{- $auditDB := eq ($audit.sink | default "log") "postgres" }}
{{- $to := $d.to }}
{{- if and (not $to) $harbor (not .Values.harbor.database.host) }}
{{- $to = include "blobgate.networkPolicy.harborPods" (list . "database") | fromYamlArray }}
{{- end }}
{{- if not $d.to }}
{{- $hosts := list }}
{{- if and $harbor .Values.harbor.database.host }}
{{- $hosts = append $hosts .Values.harbor.database.host }}
{{- end }}
{{- if $auditDB }}
{{- $hosts = append $hosts (include "blobgate.networkPolicy.hostOf" ($audit.dsn | default "")) }}
{{- end }}
{{- $to = concat $to (include "blobgate.networkPolicy.peersOfHosts" (list . $hosts) | fromYamlArray) }}
{{- end }}
{{- if $to }}
{{- toYaml (dict "to" $to "ports" $d.ports) }}
{{- end }}
{{- end }}

{{- define "blobgate.networkPolicy.redis" -}}
{{- $r := .Values.networkPolicy.egress.redis }}
{{- $redis := .Values.config.redis | default dict }}
{{- $to := $r.to }}
{{- if not $to }}
{{- $hosts := list }}
{{- with $redis.url }}
{{- $hosts = append $hosts (include "blobgate.networkPolicy.hostOf" .) }}
{{- end }}
{{- range $redis.sentinels }}
{{- $hosts = append $hosts (regexReplaceAll ":[0-9]+$" . "" | trimPrefix "[" | trimSuffix "]") }}
{{- end }}
{{- $to = include "blobgate.networkPolicy.peersOfHosts" (list . $hosts) | fromYamlArray }}
{{- end }}
{{- if $to }}
{{- toYaml (dict "to" $to "ports" $r.ports) }}
{{- end }}
{{- end }}

{{/*
Keeps the instance metadata service (169.254.169.254, fd00:ec2::254) and IPv6 link-local
addresses out of every ipBlock of the given rules: a block that covers one of those
ranges gets it as an "except"; a block inside 169.254.0.0/16 (node-local DNS) is kept as
it is unless it reaches the metadata endpoint, which fails the render. Input and output:
{rules: [NetworkPolicyEgressRule...]}.
*/}}
{{- define "blobgate.networkPolicy.guard" -}}
{{- $metadata := list (dict "cidr" "169.254.0.0/16" "endpoint" "169.254.169.254") (dict "cidr" "fe80::/10" "endpoint" "") (dict "cidr" "fd00:ec2::254/128" "endpoint" "fd00:ec2::254") }}
{{- $out := list }}
{{- range .rules }}
{{- $rule := deepCopy . }}
{{- $peers := list }}
{{- range ($rule.to | default list) }}
{{- $peer := deepCopy . }}
{{- with $peer.ipBlock }}
{{- $block := . }}
{{- $cidr := splitList "/" .cidr }}
{{- $len := int (index $cidr 1) }}
{{- $bits := include "blobgate.ip.bits" (index $cidr 0) }}
{{- $except := .except | default list }}
{{- range $metadata }}
{{- $m := splitList "/" .cidr }}
{{- $mlen := int (index $m 1) }}
{{- $mbits := include "blobgate.ip.bits" (index $m 0) }}
{{- if eq (len $bits) (len $mbits) }}
{{- if and (lt $len $mlen) (eq (substr 0 $len $bits) (substr 0 $len $mbits)) }}
{{- if not (has .cidr $except) }}
{{- $except = append $except .cidr }}
{{- end }}
{{- else if and (ge $len $mlen) (eq (substr 0 $mlen $bits) (substr 0 $mlen $mbits)) .endpoint }}
{{- if eq (substr 0 $len $bits) (substr 0 $len (include "blobgate.ip.bits" .endpoint)) }}
{{- fail (printf "networkPolicy: egress to %s reaches the instance metadata endpoint %s; set networkPolicy.egress.instanceMetadata: true if the pods take their credentials from it" $block.cidr .endpoint) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if $except }}
{{- $_ := set $block "except" $except }}
{{- end }}
{{- end }}
{{- $peers = append $peers $peer }}
{{- end }}
{{- if hasKey $rule "to" }}
{{- $_ := set $rule "to" $peers }}
{{- end }}
{{- $out = append $out $rule }}
{{- end }}
{{- toYaml (dict "rules" $out) }}
{{- end }}

{{/*
An IPv4 or IPv6 address as a string of 32 or 128 "0"/"1" characters.
*/}}
{{- define "blobgate.ip.bits" -}}
{{- if contains ":" . }}
{{- if contains "." . }}
{{- fail (printf "networkPolicy: write %s without an embedded IPv4 part" .) }}
{{- end }}
{{- $hex := dict "0" "0000" "1" "0001" "2" "0010" "3" "0011" "4" "0100" "5" "0101" "6" "0110" "7" "0111" "8" "1000" "9" "1001" "a" "1010" "b" "1011" "c" "1100" "d" "1101" "e" "1110" "f" "1111" }}
{{- $parts := splitList "::" (lower .) }}
{{- $head := list }}
{{- $tail := list }}
{{- if index $parts 0 }}
{{- $head = splitList ":" (index $parts 0) }}
{{- end }}
{{- if and (eq (len $parts) 2) (index $parts (sub (len $parts) 1)) }}
{{- $tail = splitList ":" (index $parts 1) }}
{{- end }}
{{- $groups := $head }}
{{- if eq (len $parts) 2 }}
{{- range until (int (sub 8 (add (len $head) (len $tail)))) }}
{{- $groups = append $groups "0" }}
{{- end }}
{{- end }}
{{- range concat $groups $tail }}
{{- range splitList "" (printf "%s%s" (repeat (int (sub 4 (len .))) "0") .) }}
{{- get $hex . }}
{{- end }}
{{- end }}
{{- else }}
{{- range splitList "." . }}
{{- printf "%08b" (atoi .) }}
{{- end }}
{{- end }}
{{- end }}
