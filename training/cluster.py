"""Multi-worker training on Kubernetes: an Indexed Job whose pods find each other through a headless Service.

    python -m training.cluster deploy/ --workers 4 --image registry.example.com/srgan-toolkit:0.1 -- --preset photos

writes `deploy/training/gpu/` and `deploy/training/cpu/` (Kustomize folders): the Job, its headless Service and a
ReadWriteMany PersistentVolumeClaim for the run's folder. Every pod runs `python -m training.run --strategy
multi-worker --run-dir /runs/<run>` with the arguments after `--`; its TF_CONFIG is derived from its completion
index (JOB_COMPLETION_INDEX, set by Kubernetes) by `tf_config_for_index`, so no per-pod YAML exists. Worker 0
writes the checkpoints on the shared volume; a pod that fails is restarted in place (same name, same address)
and every worker resumes from the latest checkpoint, as a single-machine run does.
"""

import dataclasses
import json
import os
import sys
from pathlib import Path

WORKER_PORT = 2222
# What the Job's pods are told, beside Kubernetes' own JOB_COMPLETION_INDEX.
ENV_WORKERS, ENV_JOB, ENV_SERVICE, ENV_PORT = ("SRGAN_WORKERS", "SRGAN_JOB_NAME", "SRGAN_WORKER_SERVICE",
                                               "SRGAN_WORKER_PORT")
COMPONENT = "training"


def tf_config_for_index(index: int, workers: int, job_name: str, service: str, port: int = WORKER_PORT) -> dict:
    """TF_CONFIG of worker `index`: an Indexed Job's pod `<job>-<i>` is `<job>-<i>.<service>` in DNS when the
    pod template's subdomain names the headless Service."""
    if not 0 <= index < workers:
        raise ValueError(f"completion index {index} is outside 0…{workers - 1}")
    return {"cluster": {"worker": [f"{job_name}-{i}.{service}:{port}" for i in range(workers)]},
            "task": {"type": "worker", "index": index}}


def tf_config_from_job(environ=os.environ) -> str | None:
    """TF_CONFIG for a pod of our Indexed Job, from its environment; None outside one or when TF_CONFIG is set."""
    if "TF_CONFIG" in environ or "JOB_COMPLETION_INDEX" not in environ or ENV_WORKERS not in environ:
        return None
    return json.dumps(tf_config_for_index(int(environ["JOB_COMPLETION_INDEX"]), int(environ[ENV_WORKERS]),
                                          environ[ENV_JOB], environ[ENV_SERVICE],
                                          int(environ.get(ENV_PORT, WORKER_PORT))))


# -- manifests ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ClusterConfig:
    out: Path
    workers: int = 2
    image: str = "srgan-toolkit:latest"  # built from the repository's Dockerfile
    job_name: str = "srgan-train"
    run_name: str = "photos"
    namespace: str | None = None
    volume_size: str = "20Gi"
    train_args: tuple[str, ...] = ("--preset", "photos")


def _job(c: ClusterConfig, gpu: bool) -> dict:
    from core.manifests import metadata, restricted_security_context
    meta = metadata(c.job_name, COMPONENT, c.namespace)
    env = {ENV_WORKERS: str(c.workers), ENV_JOB: c.job_name, ENV_SERVICE: c.job_name, ENV_PORT: str(WORKER_PORT),
           # A read-only root: Keras, matplotlib and TensorFlow write their caches under HOME.
           "HOME": "/tmp", "MPLCONFIGDIR": "/tmp/matplotlib"}
    resources = ({"requests": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"},
                  "limits": {"memory": "32Gi", "nvidia.com/gpu": "1"}} if gpu else
                 {"requests": {"cpu": "8", "memory": "16Gi"}, "limits": {"memory": "16Gi"}})
    container = {
        "name": "trainer", "image": c.image, "command": ["python", "-m", "training.run"],
        "args": ["--strategy", "multi-worker", "--run-dir", f"/runs/{c.run_name}", "--cache-dir", "/cache",
                 *c.train_args],
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "ports": [{"name": "worker", "containerPort": WORKER_PORT}],
        "resources": resources, "securityContext": restricted_security_context(),
        "volumeMounts": [{"name": "runs", "mountPath": "/runs"}, {"name": "cache", "mountPath": "/cache"},
                         {"name": "tmp", "mountPath": "/tmp"}]}
    template = {"metadata": {"labels": meta["labels"]}, "spec": {
        "subdomain": c.job_name,  # with the headless Service: <job>-<index>.<job> resolves to the pod
        "restartPolicy": "OnFailure",  # in place: the pod keeps its name and address, the others reconnect
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "fsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": "runs", "persistentVolumeClaim": {"claimName": f"{c.job_name}-runs"}},
                    {"name": "cache", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]}}
    if gpu:
        template["spec"]["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": {
        "completionMode": "Indexed", "completions": c.workers, "parallelism": c.workers,
        "backoffLimit": 4 * c.workers, "template": template}}


def _service(c: ClusterConfig) -> dict:
    from core.manifests import labels, metadata
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata(c.job_name, COMPONENT, c.namespace),
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": labels(COMPONENT),
                     "ports": [{"name": "worker", "port": WORKER_PORT, "targetPort": "worker"}]}}


def _volume_claim(c: ClusterConfig) -> dict:
    from core.manifests import metadata
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": metadata(f"{c.job_name}-runs", COMPONENT, c.namespace),
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": c.volume_size}}}}


def write_manifests(c: ClusterConfig) -> list[Path]:
    from core.manifests import write_documents, write_kustomization
    written = []
    for variant, gpu in (("gpu", True), ("cpu", False)):
        folder = c.out / "training" / variant
        files = [write_documents(folder / "job.yaml", [_job(c, gpu)]),
                 write_documents(folder / "service.yaml", [_service(c)]),
                 write_documents(folder / "volumeclaim.yaml", [_volume_claim(c)])]
        written += [*files, write_kustomization(folder, files)]
    return written


def parse_args(argv=None) -> ClusterConfig:
    from core.cli import parser
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args = ()
    if "--" in argv:
        at = argv.index("--")
        argv, train_args = argv[:at], tuple(argv[at + 1:])
    d = ClusterConfig(Path("deploy"))
    p = parser("python -m training.cluster", __doc__)
    p.add_argument("out", type=Path, help="folder for the manifests (training/gpu, training/cpu)")
    p.add_argument("--workers", type=int, default=d.workers)
    p.add_argument("--image", default=d.image, help="our toolkit's image (the repository's Dockerfile)")
    p.add_argument("--job-name", default=d.job_name)
    p.add_argument("--run-name", default=d.run_name, help="the run's folder on the shared volume: /runs/<name>")
    p.add_argument("--namespace", default=d.namespace)
    p.add_argument("--volume-size", default=d.volume_size)
    args = vars(p.parse_args(argv))
    if args["workers"] < 1:
        p.error("--workers must be at least 1")
    return ClusterConfig(**args, train_args=train_args or d.train_args)


def main(argv=None) -> int:
    config = parse_args(argv)
    files = write_manifests(config)
    print(f"{len(files)} files in {config.out / 'training'}: kubectl apply -k {config.out}/training/gpu (or cpu)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
