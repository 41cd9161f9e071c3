"""The server's Prometheus metrics, under TF Serving's own names, so its dashboards and alerts work unchanged.

TF Serving exports its TensorFlow monitoring metrics with "/" turned into ":" (servables/tensorflow/util.cc,
cc/saved_model/loader.cc, batching_util): `:tensorflow:serving:request_count{model_name,status}`,
`:tensorflow:serving:request_latency{model_name,API,entrypoint}` (microseconds, buckets 10·1.8^i),
`:tensorflow:cc:saved_model:load_latency{model_path}` (total microseconds of successful loads),
`:tensorflow:cc:saved_model:load_attempt_count{model_path,status}` and
`:tensorflow:serving:batching:processed_batch_size{model_name,op_name}`. One set per process, as in TF
Serving. The counters are exposed under their exact names (type untyped): prometheus_client's Counter would
add a `_total` suffix that TF Serving's exporter does not have.
"""

import threading

from prometheus_client import CollectorRegistry, Histogram, disable_created_metrics
from prometheus_client.core import Metric

disable_created_metrics()  # no `_created` series: TF Serving's exporter has none

# The model_name label of requests for a name this server does not serve. TF Serving labels those with the name
# sent, so that every client-made name is a new series held for ever (20 000 names grew our page to 95 MB, and
# ten names of 2 MB each to 740 MB per scrape): the label set here is the configured names plus this one.
UNSERVED = "(not served)"

LATENCY_BUCKETS = tuple(10 * 1.8 ** i for i in range(33))  # TF Serving's: 10 µs to ~20 minutes
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ExactCounter:
    """A labelled counter exported under exactly its name."""

    def __init__(self, name: str, documentation: str, labels: tuple):
        self.name, self.documentation, self.labels = name, documentation, labels
        self._values: dict[tuple, float] = {}
        self._lock = threading.Lock()

    def inc(self, *label_values: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[label_values] = self._values.get(label_values, 0.0) + amount

    def value(self, *label_values: str) -> float:
        with self._lock:
            return self._values.get(label_values, 0.0)

    def collect(self):
        metric = Metric(self.name, self.documentation, "unknown")
        with self._lock:
            for label_values, value in sorted(self._values.items()):
                metric.add_sample(self.name, dict(zip(self.labels, label_values)), value)
        yield metric


class ServingMetrics:
    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_count = ExactCounter(":tensorflow:serving:request_count", "The total number of requests.",
                                          ("model_name", "status"))
        self.load_latency = ExactCounter(
            ":tensorflow:cc:saved_model:load_latency",
            "Latency in microseconds for SavedModels that were successfully loaded.", ("model_path",))
        self.load_attempts = ExactCounter(":tensorflow:cc:saved_model:load_attempt_count",
                                          "The number of times a SavedModel was successfully loaded.",
                                          ("model_path", "status"))
        for counter in (self.request_count, self.load_latency, self.load_attempts):
            self.registry.register(counter)
        self.request_latency = Histogram(
            ":tensorflow:serving:request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ("model_name", "API", "entrypoint"), buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram(
            ":tensorflow:serving:batching:processed_batch_size",
            "Tracks the batch size distribution on processing by model_name (if available).",
            ("model_name", "op_name"), buckets=BATCH_SIZE_BUCKETS, registry=self.registry)

    def request(self, model_name: str, api: str, entrypoint: str, status: str, seconds: float) -> None:
        """One request's count, and its latency when it succeeded: TF Serving records the latency of OK requests
        only (prediction_service_impl.cc, Predict). `model_name`: a served name or UNSERVED (the caller folds)."""
        self.request_count.inc(model_name, status)
        if status == "OK":
            self.request_latency.labels(model_name, api, entrypoint).observe(seconds * 1e6)

    def load(self, model_path: str, seconds: float, ok: bool) -> None:
        self.load_attempts.inc(model_path, "success" if ok else "fail")
        if ok:
            self.load_latency.inc(model_path, amount=seconds * 1e6)


METRICS = ServingMetrics()  # the process's metrics, as TF Serving keeps one set per process
