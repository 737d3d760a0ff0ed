{{- define "cofi.labels" -}}
app.kubernetes.io/name: cofi
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{- define "cofi.gpuHosts" -}}
{{- $hosts := list -}}
{{- range .Values.gpuHosts -}}
{{- $hosts = append $hosts (printf "%s:%d" .address (int .capacity)) -}}
{{- end -}}
{{- join "," $hosts -}}
{{- end }}

{{/* The environment every service shares; secrets come from Secret objects as files. */}}
{{- define "cofi.env" -}}
- {name: KAFKA_BOOTSTRAP_SERVERS, value: {{ .Values.kafka.bootstrapServers | quote }}}
- {name: KAFKA_SECURITY_PROTOCOL, value: {{ .Values.kafka.securityProtocol | quote }}}
- {name: KAFKA_SASL_MECHANISM, value: {{ .Values.kafka.saslMechanism | quote }}}
- name: KAFKA_SASL_USERNAME
  valueFrom: {secretKeyRef: {name: {{ .Values.kafka.credentialsSecret }}, key: username}}
- {name: KAFKA_SASL_PASSWORD_FILE, value: /run/secrets/kafka/password}
- {name: KAFKA_SSL_CAFILE, value: /run/secrets/kafka-ca/ca.pem}
- {name: TOPIC_PREFIX, value: {{ .Values.topicPrefix | quote }}}
- {name: GPU_HOSTS, value: {{ include "cofi.gpuHosts" . | quote }}}
- {name: STAGE_PARTITIONS, value: {{ .Values.stagePartitions | quote }}}
{{- /* A Deployment per (GPU host, stage), scaled by KEDA on its own group's lag. */}}
- {name: GPU_STAGE_CONSUMERS, value: per_stage}
- {name: DATABASE_URL, value: {{ .Values.database.url | quote }}}
- {name: DATABASE_PASSWORD_FILE, value: /run/secrets/db/password}
- {name: LLM_API_URL, value: {{ .Values.llm.url | quote }}}
- {name: LLM_MODEL, value: {{ .Values.llm.model | quote }}}
- {name: LLM_MAX_CONCURRENCY, value: {{ .Values.llm.maxConcurrency | quote }}}
- {name: LLM_API_KEY_FILE, value: /run/secrets/llm/api-key}
{{- range $stage, $port := .Values.modelPorts }}
- {name: {{ upper $stage }}_PORT, value: {{ $port | quote }}}
{{- end }}
- {name: LOG_JSON, value: "true"}
- {name: DRAIN_TIMEOUT_S, value: {{ .Values.drainTimeoutSeconds | quote }}}
- {name: METRICS_HOST, value: "0.0.0.0"}
- {name: METRICS_PORT, value: {{ .Values.metricsPort | quote }}}
{{- end }}

{{- define "cofi.secretVolumes" -}}
- name: kafka
  secret: {secretName: {{ .Values.kafka.credentialsSecret }}, items: [{key: password, path: password}]}
- name: kafka-ca
  secret: {secretName: {{ .Values.kafka.caSecret }}}
- name: db
  secret: {secretName: {{ .Values.database.passwordSecret }}}
- name: llm
  secret: {secretName: {{ .Values.llm.apiKeySecret }}}
{{- end }}

{{- define "cofi.secretMounts" -}}
- {name: kafka, mountPath: /run/secrets/kafka, readOnly: true}
- {name: kafka-ca, mountPath: /run/secrets/kafka-ca, readOnly: true}
- {name: db, mountPath: /run/secrets/db, readOnly: true}
- {name: llm, mountPath: /run/secrets/llm, readOnly: true}
{{- end }}

{{/* A cofi container: the image, its command and a locked-down user. */}}
{{- define "cofi.oneshot" -}}
image: "{{ .root.Values.image.repository }}:{{ .root.Values.image.tag }}"
imagePullPolicy: {{ .root.Values.image.pullPolicy }}
args: {{ toJson .args }}
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities: {drop: [ALL]}
{{- end }}

{{/* A long-running cofi container: probes on its observability port. */}}
{{- define "cofi.container" -}}
{{ include "cofi.oneshot" . }}
ports:
  - {name: metrics, containerPort: {{ .root.Values.metricsPort }}}
livenessProbe:
  httpGet: {path: /livez, port: metrics}
  periodSeconds: 10
  failureThreshold: 6
readinessProbe:
  httpGet: {path: /readyz, port: metrics}
  periodSeconds: 5
{{- end }}
