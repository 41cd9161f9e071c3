"""TF Serving on Kubernetes, generated from the same configuration as `python -m serving.tf_serving`'s files.

    python -m serving.tf_serving --model_base_path models/srgan --kubernetes deploy/

writes, for a GPU and a CPU variant (`deploy/serving/gpu/`, `deploy/serving/cpu/`, each a Kustomize folder):
models.config, batching.config and monitoring.config, which Kustomize makes the ConfigMap; a read-only
PersistentVolumeClaim for the model repository (or none when --model_uri names an object store TF Serving reads
itself); the Deployment; a headless Service for gRPC clients that balance per request and a ClusterIP Service for
REST and metrics; a PodDisruptionBudget; a HorizontalPodAutoscaler on a serving metric with CPU as the fallback.
Beside them: `deploy/serving/prometheus-adapter-values.yaml` (the rule that turns TF Serving's metrics into the
HPA's) and `deploy/kserve/inferenceservice.yaml` (the same model on KServe, with a canary). Why each setting is
what it is: docs/deployment.md.
"""

import dataclasses
import json
from pathlib import Path

from core.manifests import (metadata, restricted_security_context, spread_across_nodes, write_documents,
                            write_kustomization)
from serving.tf_serving import (GPU_BATCH_THREADS, METRICS_PATH, MONITORING_CONFIG, TfServingConfig,
                                batching_config, models_config, server_command)

COMPONENT = "serving"
CONFIG_DIR = Path("/config")  # where the ConfigMap is mounted in the container
MODELS_DIR = "/models"  # where the repository volume is mounted
PROBE_SIZE = 4  # the probe's image: 4×4 black pixels, the whole network in a few milliseconds


@dataclasses.dataclass(frozen=True)
class KubernetesConfig:
    namespace: str | None = None
    replicas: int = 2
    max_replicas: int = 8
    model_uri: str | None = None  # gs://…/models (TF Serving reads it): no volume; default: a PVC at /models
    volume_claim: str = "srgan-models"
    volume_size: str = "10Gi"
    gpu_memory_fraction: float = 0.8  # of the card; the rest for CUDA's context and cuDNN's workspaces
    drain_seconds: int = 20  # preStop pause: endpoints removed everywhere, requests in flight answered
    queue_target_us: int = 20_000  # HPA target: mean batch queuing time per pod (GPU)
    latency_target_us: int = 200_000  # HPA target: mean request latency per pod (CPU)


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str  # gpu | cpu
    image: str
    requests: dict
    limits: dict
    batch_threads: int


def variants(c: TfServingConfig) -> list[Variant]:
    gpu_image = c.image
    cpu_image = gpu_image.removesuffix("-gpu")
    return [Variant("gpu", gpu_image, {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": "1"},
                    {"memory": "8Gi", "nvidia.com/gpu": "1"}, c.num_batch_threads or GPU_BATCH_THREADS),
            Variant("cpu", cpu_image, {"cpu": "4", "memory": "4Gi"}, {"memory": "4Gi"}, c.num_batch_threads or 4)]


def _name(c: TfServingConfig, suffix: str = "") -> str:
    return f"{c.model_name}-{COMPONENT}{suffix}".replace("_", "-").lower()


# -- probes ---------------------------------------------------------------------------------------------------
def metadata_path(c: TfServingConfig) -> str:
    """GetModelMetadata over REST: 404 until a version is loaded (unlike /v1/models/<name>, always 200)."""
    return f"/v1/models/{c.model_name}/metadata"


def probe_script(c: TfServingConfig) -> str:
    """A real predict over REST, in bash alone (TF Serving's image has bash but no curl or wget): exit status 0
    only for HTTP 200. Used by the readiness and liveness probes, so "ready" and "alive" mean "answers"."""
    row = "[" + ",".join(["[0,0,0]"] * PROBE_SIZE) + "]"
    body = json.dumps({"instances": [json.loads("[" + ",".join([row] * PROBE_SIZE) + "]")]}, separators=(",", ":"))
    return ("exec 3<>/dev/tcp/127.0.0.1/{port} || exit 1\n"
            "body='{body}'\n"
            "printf 'POST /v1/models/{name}:predict HTTP/1.1\\r\\nHost: localhost\\r\\nContent-Type: application/json"
            "\\r\\nContent-Length: %d\\r\\nConnection: close\\r\\n\\r\\n%s' \"${{#body}}\" \"$body\" >&3\n"
            "read -r -t 9 status <&3 || exit 1\n"
            "case \"$status\" in *' 200 '*) exit 0 ;; *) echo \"predict answered: $status\"; exit 1 ;; esac\n"
            ).format(port=c.rest_api_port, body=body, name=c.model_name)


def probes(c: TfServingConfig) -> dict:
    predict = {"exec": {"command": ["/bin/bash", "-c", probe_script(c)]}}
    return {
        # Loading and warm-up can take minutes: up to 10 min here, then readiness and liveness take over.
        "startupProbe": {"httpGet": {"path": metadata_path(c), "port": "http"}, "periodSeconds": 10,
                         "timeoutSeconds": 5, "failureThreshold": 60},
        "readinessProbe": {**predict, "periodSeconds": 10, "timeoutSeconds": 10, "failureThreshold": 2},
        # A server alive but unable to answer (a GPU out of memory, a hang) is restarted.
        "livenessProbe": {**predict, "periodSeconds": 30, "timeoutSeconds": 10, "failureThreshold": 3},
    }


# -- resources ------------------------------------------------------------------------------------------------
def config_files(c: TfServingConfig, k: KubernetesConfig, v: Variant) -> dict[str, str]:
    """The ConfigMap's files, as `serving.tf_serving` writes them for a local server, with the container's paths.
    `export.push --model-config …/models.config` edits models.config in place (labels, canary, rollback)."""
    base_path = f"{k.model_uri.rstrip('/')}/{c.model_name}" if k.model_uri else f"{MODELS_DIR}/{c.model_name}"
    return {"models.config": models_config(c, base_path), "batching.config": batching_config(c, v.batch_threads),
            "monitoring.config": MONITORING_CONFIG}


def config_map_name(c: TfServingConfig) -> str:
    return _name(c, "-config")


def server_args(c: TfServingConfig, k: KubernetesConfig, v: Variant) -> list[str]:
    files = {key: CONFIG_DIR / f"{key}.config" for key in ("models", "batching", "monitoring")}
    args = server_command(c, files)[1:]
    # The config names labels of versions that may still load; without this TF Serving refuses the config.
    args = [a for a in args if not a.startswith("--allow_version_labels")]
    args.append("--allow_version_labels_for_unavailable_models=true")
    if v.name == "gpu":
        args.append(f"--per_process_gpu_memory_fraction={k.gpu_memory_fraction}")
    return args


def deployment(c: TfServingConfig, k: KubernetesConfig, v: Variant) -> dict:
    name = _name(c)
    mounts = [{"name": "config", "mountPath": str(CONFIG_DIR), "readOnly": True},
              {"name": "tmp", "mountPath": "/tmp"}]
    volumes = [{"name": "config", "configMap": {"name": config_map_name(c)}}, {"name": "tmp", "emptyDir": {}}]
    if not k.model_uri:
        mounts.append({"name": "models", "mountPath": MODELS_DIR, "readOnly": True})
        volumes.append({"name": "models", "persistentVolumeClaim": {"claimName": k.volume_claim, "readOnly": True}})
    container = {
        "name": "tensorflow-serving", "image": v.image, "command": ["/usr/bin/tensorflow_model_server"],
        "args": server_args(c, k, v),
        "ports": [{"name": "grpc", "containerPort": c.port}, {"name": "http", "containerPort": c.rest_api_port}],
        **probes(c),
        # TF Serving ignores SIGTERM (tensorflow/serving#1853): the pause lets every endpoint list drop the pod
        # and the requests in flight finish; the grace period covers it, then the kill.
        "lifecycle": {"preStop": {"exec": {"command": ["/bin/sleep", str(k.drain_seconds)]}}},
        "resources": {"requests": v.requests, "limits": v.limits},
        "securityContext": restricted_security_context(), "volumeMounts": mounts}
    template = {
        "metadata": {"labels": metadata(name, COMPONENT, None)["labels"],
                     "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(c.rest_api_port),
                                     "prometheus.io/path": METRICS_PATH}},
        "spec": {"terminationGracePeriodSeconds": k.drain_seconds + 10, "affinity": spread_across_nodes(COMPONENT),
                 "automountServiceAccountToken": False,
                 "securityContext": {"runAsNonRoot": True, "fsGroup": 1000,
                                     "seccompProfile": {"type": "RuntimeDefault"}},
                 "containers": [container], "volumes": volumes}}
    if v.name == "gpu":
        template["spec"]["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata(name, COMPONENT, k.namespace),
            "spec": {"replicas": k.replicas, "selector": {"matchLabels": metadata(name, COMPONENT, None)["labels"]},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                     "template": template}}


def services(c: TfServingConfig, k: KubernetesConfig) -> list[dict]:
    selector = metadata(_name(c), COMPONENT, None)["labels"]
    grpc_port = {"name": "grpc", "port": c.port, "targetPort": "grpc", "appProtocol": "grpc"}
    http_port = {"name": "http", "port": c.rest_api_port, "targetPort": "http", "appProtocol": "http"}
    # gRPC is long-lived HTTP/2: a ClusterIP Service balances connections, not requests. The headless Service
    # gives clients every pod's address (grpc: dns:///…, round_robin) or a mesh something to balance.
    return [{"apiVersion": "v1", "kind": "Service", "metadata": metadata(_name(c, "-grpc"), COMPONENT, k.namespace),
             "spec": {"clusterIP": "None", "selector": selector, "ports": [grpc_port]}},
            {"apiVersion": "v1", "kind": "Service", "metadata": metadata(_name(c), COMPONENT, k.namespace),
             "spec": {"type": "ClusterIP", "selector": selector, "ports": [grpc_port, http_port]}}]


def disruption_budget(c: TfServingConfig, k: KubernetesConfig) -> dict:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": metadata(_name(c), COMPONENT, k.namespace),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": metadata(_name(c), COMPONENT, None)["labels"]}}}


GPU_METRIC = "tfserving_batch_queuing_microseconds"
CPU_METRIC = "tfserving_request_latency_microseconds"


def autoscaler(c: TfServingConfig, k: KubernetesConfig, v: Variant) -> dict:
    # GPU servers scale on how long requests wait for a batch (CPU use says nothing about a busy GPU); CPU
    # servers on request latency. CPU utilisation stays as the fallback when the custom metric is missing.
    metric, target = (GPU_METRIC, k.queue_target_us) if v.name == "gpu" else (CPU_METRIC, k.latency_target_us)
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": metadata(_name(c), COMPONENT, k.namespace),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": _name(c)},
                     "minReplicas": k.replicas, "maxReplicas": k.max_replicas,
                     "metrics": [{"type": "Pods", "pods": {
                                     "metric": {"name": metric},
                                     "target": {"type": "AverageValue", "averageValue": str(target)}}},
                                 {"type": "Resource", "resource": {"name": "cpu", "target": {
                                     "type": "Utilization", "averageUtilization": 80}}}],
                     # Loading a version takes minutes: scale down slowly.
                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": 600}}}}


def volume_claim(k: KubernetesConfig) -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": metadata(k.volume_claim, COMPONENT, k.namespace),
            "spec": {"accessModes": ["ReadOnlyMany"], "resources": {"requests": {"storage": k.volume_size}}}}


def adapter_rules() -> dict:
    """prometheus-adapter's Helm values: the two per-pod metrics the autoscalers read, from what TF Serving
    exports on monitoring.config's path (histograms in microseconds)."""
    def rule(series: str, name: str) -> dict:
        return {"seriesQuery": f'{{__name__="{series}_count",namespace!="",pod!=""}}',
                "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
                "name": {"matches": ".*", "as": name},
                "metricsQuery": (f"sum(rate({series}_sum{{<<.LabelMatchers>>}}[2m])) by (<<.GroupBy>>) / clamp_min("
                                 f"sum(rate({series}_count{{<<.LabelMatchers>>}}[2m])) by (<<.GroupBy>>), 1e-9)")}
    return {"rules": {"default": False, "custom": [
        rule(":tensorflow:serving:batching_session:queuing_latency", GPU_METRIC),
        rule(":tensorflow:serving:request_latency", CPU_METRIC)]}}


def inference_service(c: TfServingConfig, k: KubernetesConfig) -> dict:
    """The same model on KServe: its TensorFlow predictor (TF Serving) reading the repository from storageUri;
    a new storageUri is rolled out to canaryTrafficPercent of the traffic first."""
    gpu = variants(c)[0]
    storage = f"{k.model_uri.rstrip('/')}/{c.model_name}" if k.model_uri else f"pvc://{k.volume_claim}/{c.model_name}"
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": metadata(c.model_name.replace("_", "-"), COMPONENT, k.namespace),
            "spec": {"predictor": {
                "minReplicas": k.replicas, "maxReplicas": k.max_replicas, "canaryTrafficPercent": 10,
                "tensorflow": {"storageUri": storage, "runtimeVersion": gpu.image.split(":", 1)[1],
                               "args": ["--enable_model_warmup=true",
                                        f"--per_process_gpu_memory_fraction={k.gpu_memory_fraction}"],
                               "resources": {"requests": gpu.requests, "limits": gpu.limits}}}}}


def write_manifests(c: TfServingConfig, k: KubernetesConfig, out: Path) -> list[Path]:
    written = []
    for v in variants(c):
        folder = out / "serving" / v.name
        configs = []
        for name, text in config_files(c, k, v).items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
            configs.append(folder / name)
        files = [write_documents(folder / "deployment.yaml", [deployment(c, k, v)]),
                 write_documents(folder / "services.yaml", services(c, k)),
                 write_documents(folder / "poddisruptionbudget.yaml", [disruption_budget(c, k)]),
                 write_documents(folder / "autoscaler.yaml", [autoscaler(c, k, v)])]
        if not k.model_uri:
            files.append(write_documents(folder / "volumeclaim.yaml", [volume_claim(k)]))
        written += [*configs, *files, write_kustomization(folder, files, {config_map_name(c): configs})]
    written.append(write_documents(out / "serving" / "prometheus-adapter-values.yaml", [adapter_rules()]))
    written.append(write_documents(out / "kserve" / "inferenceservice.yaml", [inference_service(c, k)]))
    return written
