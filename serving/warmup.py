"""Warm-up replay, as TF Serving does it when a version loads (`--enable_model_warmup`).

The records are `PredictionLog`s in `assets.extra/tf_serving_warmup_requests` (a TFRecord file); TF Serving
replays at most 1000 of them through the freshly loaded servable before marking it AVAILABLE, and a record
that fails makes the whole load fail (servables/tensorflow/saved_model_warmup_util.cc).
"""

from pathlib import Path

from core import contract
from serving.errors import describe

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
MAX_RECORDS = 1000  # TF Serving's kMaxNumRecords


class WarmupError(RuntimeError):
    pass


def replay_warmup(version_dir: Path, runner) -> int:
    """Run every warm-up PredictRequest of a version through `runner`; returns how many ran."""
    path = Path(version_dir) / WARMUP_FILE
    if not path.is_file():
        return 0
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    count = 0
    try:
        for tensor in tf.data.TFRecordDataset(str(path)):
            record = tensor.numpy()
            if count >= MAX_RECORDS:
                raise WarmupError(f"more than {MAX_RECORDS} warm-up records in {path}")
            log = prediction_log_pb2.PredictionLog.FromString(record)
            if log.WhichOneof("log_type") != "predict_log":
                raise WarmupError(f"unsupported warm-up record type {log.WhichOneof('log_type')!r}")
            request = log.predict_log.request
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            runner.run(request.model_spec.signature_name or contract.SERVING_DEFAULT, inputs)
            count += 1
    except WarmupError:
        raise
    except Exception as error:  # a bad record or a failing run: the version must not be served
        raise WarmupError(f"warm-up request {count + 1} of {path} failed: {describe(error)}") from None
    return count
