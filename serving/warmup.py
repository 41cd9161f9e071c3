"""Warm-up replay, as TF Serving does it when a version loads (`--enable_model_warmup`).

The records are `PredictionLog`s in `assets.extra/tf_serving_warmup_requests` (a TFRecord file); TF Serving
replays at most 1000 of them through the freshly loaded servable before marking it AVAILABLE, and a record
that fails makes the whole load fail (servables/tensorflow/saved_model_warmup_util.cc).
"""

from pathlib import Path

from core import contract
from core.repository import WARMUP_FILE
from serving.errors import describe

MAX_RECORDS = 1000  # TF Serving's kMaxNumRecords


class WarmupError(RuntimeError):
    pass


def read_warmup_requests(path: Path) -> list:
    """The PredictRequests of a warm-up file, checked as TF Serving checks them (at most 1000, predict logs only)."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    requests = []
    try:
        for record in tf.data.TFRecordDataset(str(path)):
            if len(requests) >= MAX_RECORDS:
                raise WarmupError(f"more than {MAX_RECORDS} warm-up records in {path}")
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            if log.WhichOneof("log_type") != "predict_log":
                raise WarmupError(f"unsupported warm-up record type {log.WhichOneof('log_type')!r}")
            requests.append(log.predict_log.request)
    except WarmupError:
        raise
    except Exception as error:  # a truncated or corrupt file
        raise WarmupError(f"warm-up record {len(requests) + 1} of {path} cannot be read: {describe(error)}") from None
    return requests


def replay_warmup(version_dir: Path, runner) -> int:
    """Run every warm-up PredictRequest of a version through `runner`; returns how many ran."""
    path = Path(version_dir) / WARMUP_FILE
    if not path.is_file():
        return 0
    import tensorflow as tf

    requests = read_warmup_requests(path)
    for count, request in enumerate(requests):
        try:
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            runner.run(request.model_spec.signature_name or contract.SERVING_DEFAULT, inputs)
        except Exception as error:  # a bad record or a failing run: the version must not be served
            raise WarmupError(f"warm-up request {count + 1} of {path} failed: {describe(error)}") from None
    return len(requests)
