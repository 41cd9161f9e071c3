"""The Kubernetes manifests: valid for the pinned Kubernetes API (kubernetes-validate, strict), consistent with the
TF Serving command and configuration they come from, and probes that do what they promise against a real server."""

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import yaml

from core.manifests import KUBERNETES_VERSION
from serving.kubernetes import CONFIG_DIR, METRICS_PATH, KubernetesConfig, write_manifests
from serving.tf_serving import TfServingConfig, server_command
from tests.helpers import ServerProcess, copy_version


def _documents(folder) -> dict:
    """{relative path: [documents]} for every YAML file under `folder`, and the ConfigMaps Kustomize generates
    from each kustomization.yaml's configMapGenerator (as `kubectl apply -k` does)."""
    found = {str(p.relative_to(folder)): list(yaml.safe_load_all(p.read_text()))
             for p in sorted(folder.rglob("*.yaml"))}
    for path in sorted(folder.rglob("kustomization.yaml")):
        (kustomization,) = yaml.safe_load_all(path.read_text())
        assert all((path.parent / name).is_file() for name in kustomization["resources"])
        for generator in kustomization.get("configMapGenerator", []):
            data = {name: (path.parent / name).read_text() for name in generator["files"]}
            found[str(path.parent.relative_to(folder) / "configmap (generated)")] = [
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]}, "data": data}]
    return found


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    from training.cluster import ClusterConfig
    from training.cluster import write_manifests as write_training
    out = tmp_path_factory.mktemp("deploy")
    config = TfServingConfig(image="tensorflow/serving:2.21.0-gpu")
    write_manifests(config, KubernetesConfig(), out)
    write_training(ClusterConfig(out, workers=3))
    return config, out, _documents(out)


def _kind(documents: dict, folder: str, kind: str) -> dict:
    (found,) = [d for path, docs in documents.items() if path.startswith(folder) for d in docs if d.get("kind") == kind]
    return found


def test_every_kubernetes_resource_passes_strict_validation_for_the_pinned_version(manifests):
    import kubernetes_validate
    _, out, documents = manifests
    checked = []
    for path, docs in documents.items():
        for document in docs:
            skipped = ("serving.kserve.io", "kustomize.config")
            if document.get("apiVersion", "").startswith(skipped) or "rules" in document:
                continue  # a CRD (test below), Kustomize's own file, prometheus-adapter's Helm values
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
            checked.append((path, document["kind"]))
    kinds = {kind for _, kind in checked}
    assert kinds == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler",
                     "PersistentVolumeClaim", "Job"}
    assert len(checked) == 2 * 7 + 2 * 3  # GPU and CPU serving (two Services each), GPU and CPU training
    broken = dict(_kind(documents, "serving/gpu", "Deployment"))
    broken["spec"] = {**broken["spec"], "replica": 2}  # a typo strict validation must catch
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH (the real kustomize)")
def test_kubectl_kustomize_renders_each_kustomization_into_valid_resources(manifests):
    """What `kubectl apply -k` would send, rendered by the real kustomize (`kubectl kustomize`, offline), strictly
    valid for the pinned Kubernetes version and the same resources as the files and ConfigMaps read above."""
    import kubernetes_validate
    _, out, documents = manifests
    folders = sorted(p.parent for p in out.rglob("kustomization.yaml"))
    assert [str(f.relative_to(out)) for f in folders] == ["serving/cpu", "serving/gpu", "training/cpu", "training/gpu"]
    for folder in folders:
        rendered = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
        assert rendered.returncode == 0, rendered.stderr
        resources = [d for d in yaml.safe_load_all(rendered.stdout) if d]
        for document in resources:
            if not document["apiVersion"].startswith("serving.kserve.io"):
                kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        prefix = str(folder.relative_to(out))
        expected = sorted((d["kind"], d["metadata"]["name"]) for path, docs in documents.items()
                          if path.startswith(prefix + "/") and path.count("/") == prefix.count("/") + 1
                          for d in docs if d.get("kind") and d["kind"] != "Kustomization"
                          and not d.get("apiVersion", "").startswith("kustomize.config"))
        assert expected and sorted((d["kind"], d["metadata"]["name"]) for d in resources) == expected, prefix
        for generated in (d for d in resources if d["kind"] == "ConfigMap"):
            for name, text in generated["data"].items():
                assert (folder / name).read_text() == text


@pytest.mark.parametrize("variant", ["gpu", "cpu"])
def test_the_deployment_agrees_with_the_tf_serving_command_and_its_configs(manifests, variant):
    config, _, documents = manifests
    folder = f"serving/{variant}"
    deployment, config_map = _kind(documents, folder, "Deployment"), _kind(documents, folder, "ConfigMap")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    files = {key: CONFIG_DIR / f"{key}.config" for key in ("models", "batching", "monitoring")}
    assert set(server_command(config, files)[1:]) <= set(container["args"])  # the same flags as the local command
    mounted = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounted["config"] == str(CONFIG_DIR)
    assert {"name": "config", "configMap": {"name": config_map["metadata"]["name"]}} in pod["spec"]["volumes"]
    for key, path in files.items():  # every file the flags name is in the ConfigMap that is mounted there
        assert path.name in config_map["data"] and f"={path}" in " ".join(container["args"])
    assert f'base_path: "{mounted["models"]}/{config.model_name}"' in config_map["data"]["models.config"]
    assert f'path: "{METRICS_PATH}"' in config_map["data"]["monitoring.config"]
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == METRICS_PATH
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": config.port, "http": config.rest_api_port}
    assert container["startupProbe"]["httpGet"]["port"] in ports
    assert f"/dev/tcp/127.0.0.1/{config.rest_api_port}" in container["readinessProbe"]["exec"]["command"][2]
    for service in [d for docs in documents.values() for d in docs if d.get("kind") == "Service"
                    and d["metadata"]["labels"]["app.kubernetes.io/component"] == "serving"]:
        assert service["spec"]["selector"] == pod["metadata"]["labels"]
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)
    budget = _kind(documents, folder, "PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"] == pod["metadata"]["labels"]
    assert _kind(documents, folder, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] == \
        deployment["metadata"]["name"]
    claim = _kind(documents, folder, "PersistentVolumeClaim")
    assert {"name": "models", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"], "readOnly": True}} in \
        pod["spec"]["volumes"] and claim["spec"]["accessModes"] == ["ReadOnlyMany"]
    # Drain: the preStop pause fits in the grace period (TF Serving ignores SIGTERM, so the grace period is the end).
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pause < pod["spec"]["terminationGracePeriodSeconds"]
    security = container["securityContext"]
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]  # the only writable place
    gpu_flags = [a for a in container["args"] if a.startswith("--per_process_gpu_memory_fraction")]
    if variant == "gpu":
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1" and gpu_flags
        assert container["image"] == config.image
    else:
        assert "nvidia.com/gpu" not in json.dumps(container) and not gpu_flags
        assert container["image"] == config.image.removesuffix("-gpu")


def test_the_autoscalers_read_metrics_that_the_adapter_rules_provide(manifests):
    _, _, documents = manifests
    (values,) = documents["serving/prometheus-adapter-values.yaml"]
    provided = {rule["name"]["as"]: rule for rule in values["rules"]["custom"]}
    for variant in ("gpu", "cpu"):
        metrics = _kind(documents, f"serving/{variant}", "HorizontalPodAutoscaler")["spec"]["metrics"]
        (custom,) = [m for m in metrics if m["type"] == "Pods"]
        assert custom["pods"]["metric"]["name"] in provided
        assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in metrics)  # the fallback
    assert ":tensorflow:serving:batching_session:queuing_latency_sum" in json.dumps(values)


def test_the_kserve_inference_service_has_the_v1beta1_shape(manifests):
    """Structural (KServe's CRD schema is not vendored): the fields its v1beta1 PredictorSpec defines."""
    config, _, documents = manifests
    (service,) = documents["kserve/inferenceservice.yaml"]
    assert service["apiVersion"] == "serving.kserve.io/v1beta1" and service["kind"] == "InferenceService"
    predictor = service["spec"]["predictor"]
    assert set(predictor) <= {"minReplicas", "maxReplicas", "canaryTrafficPercent", "tensorflow"}
    assert 0 < predictor["canaryTrafficPercent"] < 100 and predictor["minReplicas"] <= predictor["maxReplicas"]
    tensorflow = predictor["tensorflow"]
    assert set(tensorflow) <= {"storageUri", "runtimeVersion", "args", "resources"}
    assert tensorflow["storageUri"].startswith(("pvc://", "gs://", "s3://")) and tensorflow["storageUri"].endswith(
        "/" + config.model_name)
    assert config.image.endswith(":" + tensorflow["runtimeVersion"])


def test_training_pods_derive_their_tf_config_from_the_completion_index(manifests):
    from training.cluster import tf_config_for_index, tf_config_from_job
    _, _, documents = manifests
    job, service = _kind(documents, "training/gpu", "Job"), _kind(documents, "training/gpu", "Service")
    pod = job["spec"]["template"]
    assert job["spec"]["completionMode"] == "Indexed" and pod["spec"]["subdomain"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    configs = [json.loads(tf_config_from_job({**env, "JOB_COMPLETION_INDEX": str(i)}))
               for i in range(job["spec"]["completions"])]
    workers = configs[0]["cluster"]["worker"]
    # Kubernetes names an Indexed Job's pods <job>-<index>; the subdomain makes them <job>-<index>.<service>.
    job_name, service_name = job["metadata"]["name"], service["metadata"]["name"]
    port = service["spec"]["ports"][0]["port"]
    assert workers == [f"{job_name}-{i}.{service_name}:{port}" for i in range(3)]
    assert [c["task"] for c in configs] == [{"type": "worker", "index": i} for i in range(3)]
    assert all(c["cluster"]["worker"] == workers for c in configs)
    assert tf_config_from_job({**env, "JOB_COMPLETION_INDEX": "0", "TF_CONFIG": "{}"}) is None  # given: kept
    assert tf_config_from_job({}) is None
    with pytest.raises(ValueError):
        tf_config_for_index(3, 3, "j", "s")
    assert "/runs/" in " ".join(pod["spec"]["containers"][0]["args"])  # checkpoints on the shared volume
    assert {"name": "runs", "persistentVolumeClaim": {"claimName": _kind(
        documents, "training/gpu", "PersistentVolumeClaim")["metadata"]["name"]}} in pod["spec"]["volumes"]


def _run_probe(container: dict, kind: str, base_url: str) -> bool:
    """A probe of the manifest, run as the kubelet runs it: exec in a shell, or an HTTP GET; within its timeout."""
    probe = container[kind]
    try:
        if "exec" in probe:
            return subprocess.run(probe["exec"]["command"], capture_output=True,
                                  timeout=probe["timeoutSeconds"]).returncode == 0
        with urllib.request.urlopen(base_url + probe["httpGet"]["path"], timeout=probe["timeoutSeconds"]) as answer:
            return 200 <= answer.status < 400
    except (subprocess.TimeoutExpired, urllib.error.URLError, TimeoutError):
        return False


def test_the_probes_say_ready_only_once_a_version_answers_and_not_alive_when_it_cannot(exported, tmp_path):
    from serving.process import free_port
    port = free_port()
    config = TfServingConfig(rest_api_port=port, image="tensorflow/serving:2.21.0-gpu")
    write_manifests(config, KubernetesConfig(), tmp_path / "deploy")
    (deployment,) = yaml.safe_load_all((tmp_path / "deploy" / "serving" / "cpu" / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    base = tmp_path / "models" / "srgan"
    base.mkdir(parents=True)
    url = f"http://127.0.0.1:{port}"
    with ServerProcess("--model_base_path", str(base), "--rest_api_port", str(port)) as server:
        kinds = ("startupProbe", "readinessProbe", "livenessProbe")
        assert [_run_probe(container, k, url) for k in kinds] == [False, False, False]  # listening, no version
        copy_version(exported[0], base, 1)
        deadline = time.monotonic() + 60
        while not _run_probe(container, "readinessProbe", url) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert [_run_probe(container, k, url) for k in kinds] == [True, True, True]
        with urllib.request.urlopen(url + METRICS_PATH, timeout=10) as page:  # the CPU autoscaler's series
            assert ":tensorflow:serving:request_latency_count" in page.read().decode()
        os.kill(server.proc.pid, signal.SIGSTOP)  # alive (the port is open) but unable to answer
        try:
            assert not _run_probe(container, "livenessProbe", url)
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)


def test_the_grpc_client_spreads_requests_over_every_address_of_a_headless_service(repository):
    """A headless Service's name resolves to every pod; two servers stand in for two pods (gRPC's ipv4: list)."""
    import numpy as np

    from serving.client import SrganClient
    from serving.process import free_port

    def served(rest_port: int) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}{METRICS_PATH}", timeout=10) as page:
            lines = [line for line in page.read().decode().splitlines()
                     if line.startswith(":tensorflow:serving:request_count{") and 'status="OK"' in line]
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines)

    ports = [free_port(), free_port()]
    with ServerProcess("--model_base_path", str(repository), "--rest_api_port", str(ports[0])) as first, \
            ServerProcess("--model_base_path", str(repository), "--rest_api_port", str(ports[1])) as second:
        with SrganClient(f"ipv4:{first.target},{second.target}") as client:
            for _ in range(10):
                client.upscale(np.zeros((1, 8, 8, 3), np.uint8))
        counts = [served(port) for port in ports]  # evenly once both connections are up; the first may lead
        assert sum(counts) == 10 and min(counts) >= 3, counts
