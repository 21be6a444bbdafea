{{/* Object name prefix, at most 63 characters (DNS label). */}}
{{- define "jupyterhub-mcp.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "jupyterhub-mcp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The cluster-scoped object (the webhook configuration) carries the namespace in its name so
that two releases in two hub namespaces do not collide.
*/}}
{{- define "jupyterhub-mcp.clusterName" -}}
{{- printf "%s-%s" (include "jupyterhub-mcp.fullname" .) .Release.Namespace | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "jupyterhub-mcp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jupyterhub-mcp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "jupyterhub-mcp.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "jupyterhub-mcp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "jupyterhub-mcp.serviceAccountName" -}}
{{- default (include "jupyterhub-mcp.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "jupyterhub-mcp.webhookServiceName" -}}
{{- printf "%s-webhook" (include "jupyterhub-mcp.fullname" . | trunc 55 | trimSuffix "-") -}}
{{- end -}}

{{- define "jupyterhub-mcp.tlsSecretName" -}}
{{- printf "%s-webhook-tls" (include "jupyterhub-mcp.fullname" . | trunc 51 | trimSuffix "-") -}}
{{- end -}}

{{- define "jupyterhub-mcp.operatorImage" -}}
{{- printf "%s:%s" .Values.operator.image.repository (default .Chart.AppVersion .Values.operator.image.tag) -}}
{{- end -}}

{{- define "jupyterhub-mcp.sidecarImage" -}}
{{- printf "%s:%s" .Values.sidecar.image.repository (default .Chart.AppVersion .Values.sidecar.image.tag) -}}
{{- end -}}

{{/*
The webhook's TLS material as YAML {ca, cert, key} (PEM), chart-generated mode only.
Reuses the existing Secret when there is one, so `helm upgrade` keeps the CA that the API server
already trusts; otherwise generates a CA and a serving certificate for the webhook Service.
Included exactly once (webhook.yaml renders both the Secret and the webhook configuration from
the same result).
*/}}
{{- define "jupyterhub-mcp.webhookTLS" -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "jupyterhub-mcp.tlsSecretName" .) -}}
{{- if and $secret (index ($secret.data | default dict) "ca.crt") (index ($secret.data | default dict) "tls.crt") (index ($secret.data | default dict) "tls.key") -}}
ca: {{ index $secret.data "ca.crt" | b64dec | quote }}
cert: {{ index $secret.data "tls.crt" | b64dec | quote }}
key: {{ index $secret.data "tls.key" | b64dec | quote }}
{{- else -}}
{{- $svc := include "jupyterhub-mcp.webhookServiceName" . -}}
{{- $days := int .Values.webhook.certValidityDays -}}
{{- $ca := genCA (printf "%s-ca" (include "jupyterhub-mcp.clusterName" .)) $days -}}
{{- $dns := list $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) -}}
{{- $ips := list -}}
{{- range .Values.webhook.extraCertHosts -}}
{{- if regexMatch "^[0-9.]+$|:" . -}}
{{- $ips = append $ips . -}}
{{- else -}}
{{- $dns = append $dns . -}}
{{- end -}}
{{- end -}}
{{- $cert := genSignedCert (printf "%s.%s.svc" $svc .Release.Namespace) $ips $dns $days $ca -}}
ca: {{ $ca.Cert | quote }}
cert: {{ $cert.Cert | quote }}
key: {{ $cert.Key | quote }}
{{- end -}}
{{- end -}}
