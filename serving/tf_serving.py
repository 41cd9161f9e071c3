"""`python -m serving.tf_serving`: run our model repository on the real TF Serving.

    python -m serving.tf_serving --model_base_path models/srgan --config_dir serving_config
    python -m serving.tf_serving --model_base_path models/srgan --start     # where tensorflow_model_server is
    python -m serving.tf_serving --model_base_path models/srgan --kubernetes deploy/   # and Kubernetes manifests

Writes TF Serving's configuration for the repository (models.config: model, version policy, labels;
batching.config: batching parameters; monitoring.config: Prometheus metrics), prints the exact
`tensorflow_model_server` command and the `docker run … tensorflow/serving:…-gpu` command, and with --start
runs the binary found on PATH and waits until the model is AVAILABLE. The embedded `serving.server` reads the
same models.config (--model_config_file), so both servers serve the same repository the same way.
"""

import dataclasses
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from core import contract
from core.cli import UserError, exit_on_user_error, parser

GPU_BATCH_THREADS = 4  # a few batches in flight keep one GPU busy (TF Serving's batching guide)


def matching_image() -> str:
    """TF Serving's GPU image of the release that matches our TensorFlow: an older server may lack ops
    that a SavedModel written by a newer TensorFlow uses."""
    from importlib import metadata
    try:
        version = metadata.version("tensorflow-serving-api")
    except metadata.PackageNotFoundError:
        version = metadata.version("tensorflow")
    return f"tensorflow/serving:{version}-gpu"


@dataclasses.dataclass(frozen=True)
class TfServingConfig:
    model_base_path: Path = Path("models/srgan")
    model_name: str = contract.MODEL_NAME
    config_dir: Path = Path("serving_config")
    port: int = contract.GRPC_PORT
    rest_api_port: int = contract.REST_PORT
    num_versions: int = 1
    labels: tuple[tuple[str, int], ...] = ()
    max_batch_size: int = contract.MAX_BATCH_SIZE  # images per executed batch
    max_request_images: int = 64  # a request with more images is split into batches of max_batch_size
    batch_timeout_micros: int = contract.BATCH_TIMEOUT_MICROS
    num_batch_threads: int = 0  # 0: the target's choice: this host's cores here, GPU_BATCH_THREADS in Docker
    max_enqueued_batches: int = 64
    enable_batching: str = "auto"  # the local command's: auto (measured here) | true | false; the GPU image batches
    image: str = dataclasses.field(default_factory=matching_image)
    start: bool = False
    kubernetes: Path | None = None  # also write Kubernetes manifests (serving.kubernetes) into this folder
    cluster: object = None  # serving.kubernetes.KubernetesConfig (imported when the flags are parsed)


def models_config(c: TfServingConfig, base_path: str) -> str:
    labels = "".join(f'\n    version_labels {{ key: "{k}" value: {v} }}' for k, v in c.labels)
    return (f'model_config_list {{\n  config {{\n    name: "{c.model_name}"\n    base_path: "{base_path}"\n'
            f'    model_platform: "tensorflow"\n'
            f'    model_version_policy {{ latest {{ num_versions: {c.num_versions} }} }}{labels}\n  }}\n}}\n')


def batching_config(c: TfServingConfig, threads: int) -> str:
    # TF Serving's batcher joins whatever requests are queued and, with padding off, fails the whole batch
    # when their images differ in size ("different shapes and padding is turned off"). So clients must send
    # one image size: SrganClient and serving.upscale send fixed-size tiles. Padding is not an option for a
    # convolutional generator: padded pixels would change the border of every image in the batch.
    # Requests larger than a batch are split (large batch splitting), so any request size is served.
    return (f"max_batch_size {{ value: {max(c.max_request_images, c.max_batch_size)} }}\n"
            f"max_execution_batch_size {{ value: {c.max_batch_size} }}\n"
            "enable_large_batch_splitting: true\n"
            f"batch_timeout_micros {{ value: {c.batch_timeout_micros} }}\n"
            f"num_batch_threads {{ value: {threads} }}\n"
            f"max_enqueued_batches {{ value: {c.max_enqueued_batches} }}\n"
            "pad_variable_length_inputs: false\n")


METRICS_PATH = "/monitoring/prometheus/metrics"  # TF Serving's usual path, on the REST port (ours too)
MONITORING_CONFIG = f'prometheus_config {{\n  enable: true\n  path: "{METRICS_PATH}"\n}}\n'


def write_configs(c: TfServingConfig, base_path: str | None = None, gpu: bool = False) -> dict[str, Path]:
    """The configuration files for one target: this host (`gpu` False) or TF Serving's GPU image."""
    import os
    c.config_dir.mkdir(parents=True, exist_ok=True)
    threads = c.num_batch_threads or (GPU_BATCH_THREADS if gpu else os.cpu_count() or 1)
    files = {"models": c.config_dir / "models.config", "batching": c.config_dir / "batching.config",
             "monitoring": c.config_dir / "monitoring.config"}
    files["models"].write_text(models_config(c, base_path or str(c.model_base_path.resolve())))
    files["batching"].write_text(batching_config(c, threads))
    files["monitoring"].write_text(MONITORING_CONFIG)
    return files


def server_command(c: TfServingConfig, files: dict[str, Path], batching: bool = True) -> list[str]:
    return ["tensorflow_model_server", f"--port={c.port}", f"--rest_api_port={c.rest_api_port}",
            f"--model_config_file={files['models'].resolve()}", "--model_config_file_poll_wait_seconds=60",
            "--file_system_poll_wait_seconds=1",
            *(["--enable_batching=true", f"--batching_parameters_file={files['batching'].resolve()}"] if batching
              else []),
            f"--monitoring_config_file={files['monitoring'].resolve()}", "--enable_model_warmup=true",
            # TF Serving reads labels before any version has loaded and refuses to start without this.
            *(["--allow_version_labels_for_unavailable_models=true"] if c.labels else [])]


def local_batching(c: TfServingConfig) -> tuple[bool, str]:
    """Whether this host's command batches, and why: as asked, or (auto) whether a batch of 8 runs faster than
    8 single runs of the newest version's SavedModel here, loaded as TF Serving loads it."""
    if c.enable_batching != "auto":
        return c.enable_batching == "true", f"--enable_batching {c.enable_batching}"
    from core.cli import find_version
    from serving.servable import SavedModelRunner, batch_gain, batching_pays, describe_batch_gain
    try:
        version = find_version(c.model_base_path)
    except UserError:
        return True, "no version exported yet to time it on; pass --enable_batching false to leave it off"
    gain = batch_gain(SavedModelRunner(version))
    return batching_pays(gain), f"{describe_batch_gain(gain)}; the SavedModel, timed on this machine"


def docker_command(c: TfServingConfig) -> list[str]:
    """The same server in TF Serving's GPU image, the repository and configs mounted read-only."""
    container = TfServingConfig(**{**dataclasses.asdict(c), "config_dir": Path("/config")})
    files = {"models": Path("/config/models.config"), "batching": Path("/config/batching.config"),
             "monitoring": Path("/config/monitoring.config")}
    flags = server_command(container, files)[1:]
    return ["docker", "run", "--rm", "--gpus", "all", "-p", f"{c.port}:{c.port}",
            "-p", f"{c.rest_api_port}:{c.rest_api_port}",
            "-v", f"{c.model_base_path.resolve()}:/models/{c.model_name}:ro",
            "-v", f"{(c.config_dir / 'docker').resolve()}:/config:ro", c.image, *flags]


def parse_args(argv=None) -> TfServingConfig:
    from serving.servable import BATCH_PROBE, PAYS
    d = TfServingConfig()
    p = parser("python -m serving.tf_serving", __doc__)
    p.add_argument("--model_base_path", type=Path, default=d.model_base_path)
    p.add_argument("--model_name", default=d.model_name)
    p.add_argument("--config_dir", type=Path, default=d.config_dir)
    p.add_argument("--port", type=int, default=d.port)
    p.add_argument("--rest_api_port", type=int, default=d.rest_api_port)
    p.add_argument("--num_versions", type=int, default=d.num_versions, help="serve the latest N versions")
    p.add_argument("--label", action="append", default=[], metavar="NAME=VERSION",
                   help="a version label, e.g. stable=3 (repeatable)")
    p.add_argument("--max_batch_size", type=int, default=d.max_batch_size, help="images per executed batch")
    p.add_argument("--max_request_images", type=int, default=d.max_request_images,
                   help="largest request accepted by the batcher (split into batches of --max_batch_size)")
    p.add_argument("--batch_timeout_micros", type=int, default=d.batch_timeout_micros)
    p.add_argument("--num_batch_threads", type=int, default=d.num_batch_threads,
                   help=f"0: this host's cores for the local command, {GPU_BATCH_THREADS} for the GPU image")
    p.add_argument("--docker_image", dest="image", default=d.image,
                   help="TF Serving's Docker image: the release matching our TensorFlow")
    p.add_argument("--enable_batching", choices=["auto", "true", "false"], default=d.enable_batching,
                   help="server-side batching in the command for this machine; auto: on where a batch of 8 is "
                        f"measured here to run at least {PAYS}× faster than {BATCH_PROBE} single runs (the GPU image "
                        "always batches)")
    p.add_argument("--start", action="store_true", help="start tensorflow_model_server if it is on PATH")
    from serving.kubernetes import KubernetesConfig
    k = KubernetesConfig()
    cluster = p.add_argument_group("Kubernetes", "python -m serving.tf_serving --kubernetes DIR: manifests for a "
                                   "GPU and a CPU Deployment of TF Serving, and a KServe InferenceService")
    cluster.add_argument("--kubernetes", type=Path, metavar="DIR", help="write the manifests into DIR")
    cluster.add_argument("--namespace", default=k.namespace, help="(default: none; kubectl's -n decides)")
    cluster.add_argument("--replicas", type=int, default=k.replicas, help="and the autoscaler's minimum")
    cluster.add_argument("--max_replicas", type=int, default=k.max_replicas)
    cluster.add_argument("--model_uri", default=k.model_uri,
                         help="the repository's base on an object store TF Serving reads (gs://bucket/models); "
                              "default: a read-only PersistentVolumeClaim mounted at /models")
    cluster.add_argument("--gpu_memory_fraction", type=float, default=k.gpu_memory_fraction)
    args = vars(p.parse_args(argv))
    args["cluster"] = KubernetesConfig(**{f: args.pop(f) for f in ("namespace", "replicas", "max_replicas",
                                                                   "model_uri", "gpu_memory_fraction")})
    labels = []
    for item in args.pop("label"):
        name, _, version = item.partition("=")
        if not name or not version.isdigit():
            raise UserError(f"--label wants NAME=VERSION (for example stable=3), got {item!r}.")
        labels.append((name, int(version)))
    return TfServingConfig(**args, labels=tuple(labels))


def start_and_wait(command: list[str], c: TfServingConfig, timeout: float = 300) -> subprocess.Popen:
    from serving.client import SrganClient
    from serving.client_base import ServingClientError
    process = subprocess.Popen(command)

    def exited(statuses):
        return None if process.poll() is None else f"tensorflow_model_server exited with status {process.returncode}."
    with SrganClient(f"127.0.0.1:{c.port}", c.model_name) as client:
        try:
            client.wait_until_available(timeout, give_up=exited)
            return process
        except ServingClientError as error:  # exited, answered an error, or too slow: none left running
            process.terminate()
            raise UserError(f"{c.model_name} did not become AVAILABLE within {timeout:.0f} s."
                            if error.code == "DEADLINE_EXCEEDED" else error.message) from None


@exit_on_user_error
def run(c: TfServingConfig) -> int:
    if not c.model_base_path.is_dir():
        raise UserError(f"{c.model_base_path} is not a folder; export a model first (python -m export.to_onnx).")
    files = write_configs(c)
    write_configs(dataclasses.replace(c, config_dir=c.config_dir / "docker"), f"/models/{c.model_name}", gpu=True)
    batching, why = local_batching(c)
    command = server_command(c, files, batching)
    print(f"wrote {', '.join(str(p) for p in files.values())}\n")
    print(f"TF Serving on this machine, server-side batching {'on' if batching else 'off'} ({why}):\n  "
          + shlex.join(command) + "\n")
    print("TF Serving on a GPU, in Docker:\n  " + shlex.join(docker_command(c)) + "\n")
    if c.kubernetes:
        from serving.kubernetes import write_manifests
        manifests = write_manifests(c, c.cluster, c.kubernetes)
        print(f"Kubernetes: {len(manifests)} files in {c.kubernetes} (kubectl apply -k {c.kubernetes}/serving/gpu or "
              f"…/cpu; docs/deployment.md)\n")
    if not c.start:
        return 0
    if shutil.which("tensorflow_model_server") is None:
        print("tensorflow_model_server is not on PATH; run the Docker command above, or the embedded server: "
              f"python -m serving.server --model_config_file {files['models']}")
        return 0
    process = start_and_wait(command, c)
    print(f"{c.model_name} is AVAILABLE on 127.0.0.1:{c.port} (gRPC) and :{c.rest_api_port} (REST); Ctrl-C stops it")
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        return process.wait()


@exit_on_user_error
def main(argv=None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
