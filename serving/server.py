"""`python -m serving.server`: an embedded server that speaks TF Serving's gRPC API.

    python -m serving.server --model_name srgan --model_base_path models/srgan --port 8500 --enable_batching

Flags carry TF Serving's names where TF Serving has the same setting. It serves the newest version (or the
versions a --model_config_file asks for), loads new versions as they appear, binds 127.0.0.1 unless --host
says otherwise, and on SIGTERM or Ctrl-C stops taking requests, finishes those in flight and exits.
"""

import argparse
import concurrent.futures
import dataclasses
import gc
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import grpc
from google.protobuf import text_format
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

from core import contract
from core.cli import UserError, exit_on_user_error, parser, setup_logging
from serving.admission import MemoryBudget, available_memory_bytes
from serving.batching import Batcher
from serving.errors import ServingError
from serving.manager import ModelManager, check_unique_names, model_config
from serving.process import READY
from serving.service import RESERVED_THREADS, Limits, ModelService, PredictionService

log = logging.getLogger("serving.server")


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    port: int = contract.GRPC_PORT
    rest_api_port: int = 0  # 0: no REST API, as in TF Serving
    rest_api_num_threads: int = 8
    rest_api_max_body_bytes: int = 64 << 20
    host: str = "127.0.0.1"
    model_name: str = contract.MODEL_NAME
    model_base_path: Path | None = None
    model_config_file: Path | None = None
    backend: str = "savedmodel"
    onnx_gpu_mode: str = "graphs"
    enable_batching: bool = False
    max_batch_size: int = contract.MAX_BATCH_SIZE
    batch_timeout_micros: int = contract.BATCH_TIMEOUT_MICROS
    num_batch_threads: int = 1
    file_system_poll_wait_seconds: float = 1.0
    grpc_max_threads: int = 16
    max_concurrent_rpcs: int = 64
    max_message_bytes: int = 64 << 20
    max_inflight_bytes: int = 0  # 0: half the memory available at start
    max_queued_requests: int = 32
    max_pixels_per_request: int = 0  # 0: the largest request the memory budget admits
    drain_seconds: float = 10.0
    # A request's computation stops at its client's deadline, and at this bound when it has none (or a later
    # one): 60 s is ~50 of our 128-pixel tiles on 2 cores, far above any request serving.upscale sends.
    max_request_seconds: float = 60.0
    rest_api_timeout_in_ms: int = 30_000  # TF Serving's flag: the deadline of every REST request
    rest_api_read_seconds: float = 10.0  # a REST request must arrive whole within this of its first byte
    admission_by_time: bool = True
    allow_version_labels_for_unavailable_models: bool = False
    # HandleReloadConfigRequest from the network; TF Serving's fleets get the same by not exposing ModelService.
    enable_reload_config: bool = True
    enable_ui: bool = False  # ours: a web page on the REST port to try the models (serving.web_ui)


def parse_args(argv=None) -> ServerConfig:
    d = ServerConfig()
    p = parser("python -m serving.server", __doc__)
    p.add_argument("--port", type=int, default=d.port, help="gRPC port (0: any free port, printed)")
    p.add_argument("--rest_api_port", type=int, default=d.rest_api_port,
                   help="TF Serving's REST API and /monitoring/prometheus/metrics on this port (0: off)")
    p.add_argument("--rest_api_num_threads", type=int, default=d.rest_api_num_threads,
                   help="Predicts computing at once over REST (2 threads more answer status and metrics)")
    p.add_argument("--rest_api_max_body_bytes", type=int, default=d.rest_api_max_body_bytes,
                   help="largest REST request body accepted; larger ones get HTTP 400")
    p.add_argument("--host", default=d.host, help="address to bind; 0.0.0.0 exposes the server to the network")
    p.add_argument("--model_name", default=d.model_name)
    p.add_argument("--model_base_path", type=Path, help="folder holding <version>/ subfolders")
    p.add_argument("--model_config_file", type=Path,
                   help="TF Serving ModelServerConfig (text proto): models, version policies, labels")
    p.add_argument("--backend", choices=["savedmodel", "onnx"], default=d.backend,
                   help="run the SavedModel with TensorFlow (as TF Serving) or model.onnx with ONNX Runtime")
    p.add_argument("--onnx_gpu_mode", choices=["graphs", "iobinding", "run"], default=d.onnx_gpu_mode,
                   help="--backend onnx on a GPU: I/O binding with a CUDA graph per input shape, I/O binding "
                        "alone, or plain session runs (ours: TF Serving has no ONNX backend)")
    p.add_argument("--enable_batching", action="store_true", help="batch concurrent requests server-side")
    p.add_argument("--max_batch_size", type=int, default=d.max_batch_size)
    p.add_argument("--batch_timeout_micros", type=int, default=d.batch_timeout_micros)
    p.add_argument("--num_batch_threads", type=int, default=d.num_batch_threads)
    p.add_argument("--file_system_poll_wait_seconds", type=float, default=d.file_system_poll_wait_seconds,
                   help="how often to look for new versions (0: only at start)")
    p.add_argument("--grpc_max_threads", type=int, default=d.grpc_max_threads,
                   help="Predicts computing at once over gRPC; more get RESOURCE_EXHAUSTED (the pool has 2 threads "
                        "more, kept for health checks and status)")
    p.add_argument("--max_message_bytes", type=int, default=d.max_message_bytes,
                   help="largest request accepted; larger ones get RESOURCE_EXHAUSTED")
    p.add_argument("--max_concurrent_rpcs", type=int, default=d.max_concurrent_rpcs,
                   help="gRPC refuses calls beyond this many in progress with RESOURCE_EXHAUSTED")
    p.add_argument("--max_inflight_bytes", type=int, default=d.max_inflight_bytes,
                   help="estimated server memory that requests in flight may hold together; a request that "
                        "never fits is refused (RESOURCE_EXHAUSTED), others wait their turn (0: half the "
                        "memory available at start, printed)")
    p.add_argument("--max_queued_requests", type=int, default=d.max_queued_requests,
                   help="requests that may wait for memory at once; more are refused (RESOURCE_EXHAUSTED)")
    p.add_argument("--max_pixels_per_request", type=int, default=d.max_pixels_per_request,
                   help="largest N·H·W of input images in one request (0: the largest the memory budget "
                        "admits for the loaded models, printed)")
    p.add_argument("--drain_seconds", type=float, default=d.drain_seconds,
                   help="on SIGTERM, how long requests in flight may take to finish; the process is gone within "
                        "this plus a few seconds, work still running is cut short")
    p.add_argument("--max_request_seconds", type=float, default=d.max_request_seconds,
                   help="the most one request may compute: its computation stops at its gRPC deadline or at this, "
                        "whichever comes first (DEADLINE_EXCEEDED)")
    p.add_argument("--rest_api_timeout_in_ms", type=int, default=d.rest_api_timeout_in_ms,
                   help="the deadline of a REST request, as TF Serving's flag")
    p.add_argument("--rest_api_read_seconds", type=float, default=d.rest_api_read_seconds,
                   help="a REST request must arrive whole within this many seconds of its first byte (slow "
                        "clients are cut off)")
    p.add_argument("--admission_by_time", action=argparse.BooleanOptionalAction, default=d.admission_by_time,
                   help="refuse at once (DEADLINE_EXCEEDED) a request whose time, estimated from the speed measured "
                        "at load, is over twice what its deadline leaves")
    p.add_argument("--allow_version_labels_for_unavailable_models", action="store_true",
                   help="accept version labels that name a version not (yet) AVAILABLE, as TF Serving's flag")
    p.add_argument("--enable_reload_config", action=argparse.BooleanOptionalAction, default=d.enable_reload_config,
                   help="answer ModelService.HandleReloadConfigRequest (--no-enable_reload_config: refuse it with "
                        "PERMISSION_DENIED, for servers whose gRPC port others can reach)")
    p.add_argument("--enable_ui", action="store_true",
                   help="serve a web page at /ui/ on the REST port to try the served models on a photograph (ours, "
                        "off by default: TF Serving has no page); needs --rest_api_port")
    config = ServerConfig(**vars(p.parse_args(argv)))
    if config.enable_ui and not config.rest_api_port:
        p.error("--enable_ui serves the page on the REST port: pass --rest_api_port too (e.g. 8501)")
    return config


def load_model_configs(config: ServerConfig) -> list:
    if config.model_config_file is not None:
        if not config.model_config_file.is_file():
            raise UserError(f"--model_config_file {config.model_config_file} does not exist.")
        parsed = model_server_config_pb2.ModelServerConfig()
        try:
            text_format.Parse(config.model_config_file.read_text(), parsed)
        except text_format.ParseError as error:
            raise UserError(f"{config.model_config_file} is not a ModelServerConfig text proto ({error}).")
        configs = list(parsed.model_config_list.config)
        if not configs:
            raise UserError(f"{config.model_config_file} lists no model in model_config_list.")
        try:
            check_unique_names(configs)
        except ServingError as refusal:
            raise UserError(f"{config.model_config_file}: {refusal.message} (TF Serving refuses it too).") from None
        return configs
    if config.model_base_path is None:
        raise UserError("pass --model_base_path (e.g. models/srgan) or --model_config_file.")
    if not config.model_base_path.is_dir():
        raise UserError(f"--model_base_path {config.model_base_path} is not a folder; export a model first "
                         "(python -m export.to_onnx).")
    return [model_config(config.model_name, config.model_base_path)]


class ModelServer:
    """The gRPC server with its model manager and batcher; `start()`, then `stop()` drains it."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.manager = ModelManager(load_model_configs(config), config.backend,
                                    config.file_system_poll_wait_seconds,
                                    config.allow_version_labels_for_unavailable_models, config.onnx_gpu_mode)
        self.batcher = (Batcher(config.max_batch_size, config.batch_timeout_micros / 1e6, config.num_batch_threads)
                        if config.enable_batching else None)
        self.health = health.HealthServicer()
        options = [("grpc.max_receive_message_length", config.max_message_bytes),
                   ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0)]
        self.server = grpc.server(concurrent.futures.ThreadPoolExecutor(config.grpc_max_threads + RESERVED_THREADS),
                                  options=options,
                                  maximum_concurrent_rpcs=config.max_concurrent_rpcs)
        self.budget = MemoryBudget(config.max_inflight_bytes or available_memory_bytes() // 2,
                                   config.max_queued_requests)
        limits = Limits(config.max_pixels_per_request or Limits.max_pixels,
                        max_request_seconds=config.max_request_seconds, admission_by_time=config.admission_by_time)
        self.prediction = PredictionService(self.manager, self.batcher, limits, self.budget,
                                            {"GRPC": config.grpc_max_threads, "REST": config.rest_api_num_threads})
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(self.prediction, self.server)
        self.models = ModelService(self.manager, config.enable_reload_config)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(self.models, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = None
        self.rest, self.rest_app, self.rest_port = None, None, None
        self.stopping = False  # health stays NOT_SERVING from SIGTERM on, whatever a poll finds

    def _derived_max_pixels(self) -> int:
        """The largest request the budget admits for every loaded version (the article's default otherwise)."""
        costs = [s.cost for m in self.manager.models.values() for s in list(m.available.values())]
        return min((c.max_pixels(self.budget.limit_bytes) for c in costs), default=Limits.max_pixels)

    def _derive_pixel_limit(self) -> None:
        """After each poll: the versions loaded may have changed, and with them the largest request that fits."""
        limit = self._derived_max_pixels()
        if limit != self.prediction.limits.max_pixels:
            self.prediction.limits = dataclasses.replace(self.prediction.limits, max_pixels=limit, from_budget=True)
            if self.port is not None:  # at start, the start-up line says it
                log.info("largest request now %s input pixels (derived from the memory budget for the versions "
                         "loaded)", f"{limit:,}")

    def serving(self) -> bool:
        """What health checks answer: SERVING while every base path is readable and every model has a version
        AVAILABLE (TF Serving does not even open its ports before each model's first version has loaded)."""
        return self.manager.readable and all(m.available for m in list(self.manager.models.values()))

    def _set_health(self) -> None:
        serving = self.serving()
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", "tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"):
            self.health.set(service, status)

    def _after_poll(self) -> None:
        if not self.config.max_pixels_per_request:
            self._derive_pixel_limit()
        if not self.stopping:
            self._set_health()

    def start(self) -> int:
        if not self.config.max_pixels_per_request:
            self.prediction.limits = dataclasses.replace(self.prediction.limits, from_budget=True)
        self.manager.on_polled = self._after_poll
        self.manager.start()
        if not self.config.allow_version_labels_for_unavailable_models:
            try:
                self.manager.check_labels()
            except ServingError as refusal:
                self.manager.stop()
                raise UserError(f"{refusal.message} (TF Serving refuses such a label at start too; pass "
                                 "--allow_version_labels_for_unavailable_models to accept it).") from None
        self.port = self.server.add_insecure_port(f"{self.config.host}:{self.config.port}")
        if self.port == 0:
            raise UserError(f"cannot bind {self.config.host}:{self.config.port}; is the port in use?")
        self.server.start()
        if self.config.rest_api_port:
            self.rest_port = self.start_rest(self.config.rest_api_port)
        self._set_health()
        return self.port

    def start_rest(self, port: int) -> int:
        """TF Serving's REST API on `port` (0: any free one); returns the port bound."""
        from serving.rest import RestApi, serve_rest
        page = None
        if self.config.enable_ui:
            from serving.web_ui import WebPage
            page = WebPage(self.manager, lambda: self.prediction.limits, self.config.rest_api_max_body_bytes)
        self.rest_app = RestApi(self.prediction, self.models, self.config.rest_api_max_body_bytes,
                                self.config.rest_api_timeout_in_ms / 1000, page)
        self.rest, bound = serve_rest(self.rest_app, self.config.host, port,
                                      self.config.rest_api_num_threads + RESERVED_THREADS,
                                      self.config.rest_api_read_seconds)
        threading.Thread(target=self.rest.run, name="rest-api", daemon=True).start()
        return bound

    def stop(self) -> bool:
        """Finish what is in flight on both APIs (up to --drain_seconds), refusing anything new; True when
        nothing was cut off."""
        self.stopping = True
        self.health.enter_graceful_shutdown()  # health checks now answer NOT_SERVING
        if self.rest_app:
            self.rest_app.draining = True  # new REST requests get 503 while gRPC drains
        self.server.stop(grace=self.config.drain_seconds).wait()
        drained = True
        if self.rest:
            from serving.rest import drain_and_close
            if not drain_and_close(self.rest, self.rest_app, self.config.drain_seconds):
                log.warning("REST requests still running after %s s were cut off", self.config.drain_seconds)
                drained = False
        if self.batcher:
            self.batcher.close()
        self.manager.stop()
        return drained


@exit_on_user_error
def serve(config: ServerConfig) -> None:
    server = ModelServer(config)
    # The handler takes no lock: an Event's set() inside a handler deadlocked a server whose main thread the
    # signal had interrupted inside that Event's own wait (make serve and Ctrl-C deliver two signals at once).
    signals: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _: signals.append(number))
    port = server.start()
    # Everything loaded so far (TensorFlow, the model) lives as long as the server: keep it out of the
    # garbage collector's full passes, which otherwise stall a request now and then for ~0.1 s.
    gc.freeze()
    loaded = {name: sorted(m.available) for name, m in server.manager.models.items()}
    log.info("serving %s on %s:%d (backend %s, batching %s)", loaded, config.host, port, config.backend,
             f"on, max {config.max_batch_size}" if config.enable_batching else "off")
    for name in (name for name, versions in loaded.items() if not versions):
        log.warning("no version of %s is loaded (none in %s, or none that loads): health checks answer NOT_SERVING "
                    "until one is", name, server.manager.models[name].config.base_path)
    log.info("memory budget for requests in flight: %s MB%s; largest request: %s input pixels",
             f"{server.budget.limit_bytes / 2**20:,.0f}", "" if config.max_inflight_bytes else
             " (half the memory available)", f"{server.prediction.limits.max_pixels:,}")
    _recommend_batching(server)
    if server.rest_port:
        log.info("REST API and Prometheus metrics (/monitoring/prometheus/metrics) on %s:%s", config.host,
                 server.rest_port)
    if config.enable_ui:
        from serving.web_ui import UI_PATH
        shown = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
        log.info("web page: http://%s:%s%s (open it in a browser)", shown, server.rest_port, UI_PATH)
    print(f"{READY} {config.host}:{port}", flush=True)  # the line scripts wait for (serving.process)
    # Python runs signal handlers in the main thread only when it wakes. A signal the kernel hands to another
    # thread (it does so right after a SIGSTOP/SIGCONT) would leave an endless wait here asleep: wake often.
    while not signals:
        time.sleep(0.2)
    log.info("draining: finishing requests in flight …")
    # Bounded whatever runs: a model run, a stuck load or a thread the interpreter would wait for at exit.
    watchdog = threading.Timer(config.drain_seconds + _SHUTDOWN_MARGIN_SECONDS, _exit_now, (server, "stopping took"))
    watchdog.daemon = True
    watchdog.start()
    drained = server.stop()
    if server.prediction.in_flight:
        _exit_now(server, "draining took")
    log.info("stopped")
    if not drained:
        sys.exit(_CUT_SHORT)


_SHUTDOWN_MARGIN_SECONDS = 2.0
_CUT_SHORT = 1  # the exit status when the drain cut requests short: their clients got no answer


def _recommend_batching(server: ModelServer) -> None:
    """--enable_batching keeps TF Serving's meaning (on or off, as asked); the log says whether this machine,
    measured when each version loaded, agrees."""
    from serving.servable import batching_pays, describe_batch_gain
    gains = [s.batch_gain for m in server.manager.models.values() for s in m.available.values()]
    if not gains:
        return
    gain = min(gains)
    if server.config.enable_batching and not batching_pays(gain):
        log.warning("--enable_batching is on, but %s: requests wait for a batch that saves no computation",
                    describe_batch_gain(gain))
    elif not server.config.enable_batching and batching_pays(gain):
        log.info("%s: --enable_batching would raise throughput under concurrent requests", describe_batch_gain(gain))


def _exit_now(server: ModelServer, what: str) -> None:
    """End the process at once, saying what was cut short (its clients see the connection close: UNAVAILABLE)."""
    log.warning("%s longer than --drain_seconds %s: exiting now, cutting short %d request(s) still computing",
                what, server.config.drain_seconds, server.prediction.in_flight)
    logging.shutdown()
    os._exit(_CUT_SHORT)


def main(argv=None) -> int:
    setup_logging()
    serve(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
