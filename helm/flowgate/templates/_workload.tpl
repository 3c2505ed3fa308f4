{{/*
Deployment, Service and PodDisruptionBudget of one Flowgate service.
Call with (dict "root" $ "component" "proxy" "svc" .Values.proxy).
Each service serves HTTP and its gRPC API (h2c) on the same port.
*/}}
{{- define "flowgate.workload" -}}
{{- $root := .root }}
{{- $svc := .svc }}
{{- $name := include "flowgate.componentName" . }}
{{- $autoscaled := and $svc.autoscaling $svc.autoscaling.enabled }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "flowgate.componentLabels" . | nindent 4 }}
spec:
  {{- if not $autoscaled }}
  replicas: {{ $svc.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
  selector:
    matchLabels:
      {{- include "flowgate.componentSelectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "flowgate.componentSelectorLabels" . | nindent 8 }}
        app.kubernetes.io/part-of: flowgate
        {{- with $root.Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        {{- with $root.Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "flowgate.serviceAccountName" $root }}
      automountServiceAccountToken: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      dnsConfig:
        {{- toYaml $root.Values.dnsConfig | nindent 8 }}
      terminationGracePeriodSeconds: {{ $svc.terminationGracePeriodSeconds }}
      containers:
        - name: {{ .component }}
          image: {{ include "flowgate.image" $root | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          ports:
            - name: http
              containerPort: {{ $svc.port }}
              protocol: TCP
          env:
            {{- include "flowgate.env" . | nindent 12 }}
          {{- with $root.Values.extraEnvFrom }}
          envFrom:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          startupProbe:
            httpGet:
              path: {{ $root.Values.probes.livenessPath }}
              port: http
            periodSeconds: 2
            timeoutSeconds: 2
            failureThreshold: 60
          livenessProbe:
            httpGet:
              path: {{ $root.Values.probes.livenessPath }}
              port: http
            periodSeconds: 10
            timeoutSeconds: 3
            failureThreshold: 3
          readinessProbe:
            httpGet:
              path: {{ $root.Values.probes.readinessPath }}
              port: http
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 2
          lifecycle:
            preStop:
              # Let the endpoint removal reach the ingress before SIGTERM starts the drain.
              exec:
                command: ["sleep", "5"]
          resources:
            {{- toYaml $svc.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            - name: config
              mountPath: /etc/flowgate
              readOnly: true
            - name: data
              mountPath: /data
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: config
          configMap:
            name: {{ include "flowgate.fullname" $root }}-config
        - name: data
          emptyDir:
            sizeLimit: {{ $svc.dataVolumeSizeLimit }}
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
      {{- with (default $root.Values.nodeSelector $svc.nodeSelector) }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with (default $root.Values.affinity $svc.affinity) }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with (default $root.Values.tolerations $svc.tolerations) }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $svc.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "flowgate.componentLabels" . | nindent 4 }}
    flowgate.io/metrics: "true"
spec:
  type: ClusterIP
  selector:
    {{- include "flowgate.componentSelectorLabels" . | nindent 4 }}
  ports:
    # HTTP/1.1 and HTTP/2 (h2c): the REST API and the service's gRPC API share this port.
    - name: http
      port: {{ $svc.port }}
      targetPort: http
      protocol: TCP
{{- if $svc.pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "flowgate.componentLabels" . | nindent 4 }}
spec:
  {{- if hasKey $svc.pdb "minAvailable" }}
  minAvailable: {{ $svc.pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ $svc.pdb.maxUnavailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "flowgate.componentSelectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}
