"""The SavedModel for TF Serving, with warm-up requests so that the first real request is not the slow one."""

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from core.contract import SERVING_DEFAULT, UINT8_INPUT
from export.graphs import ServingModule
from export.tiles import Tiling
from core.repository import WARMUP_FILE
# (batch, height, width) of the warm-up requests: the article's 32×32 at batch 1 and 4.
WARMUP_SHAPES = ((1, 32, 32), (4, 32, 32))


def write_saved_model(generator: keras.Model, tiling: Tiling | None, directory: Path, model_name: str) -> None:
    module = ServingModule(generator, tiling)
    tf.saved_model.save(module, str(directory), signatures=module.signatures())
    write_warmup_requests(directory / WARMUP_FILE, model_name)


def write_warmup_requests(path: Path, model_name: str, shapes=WARMUP_SHAPES) -> None:
    """TF Serving replays these PredictionLog records when it loads the version, before serving it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for n, h, w in shapes:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=SERVING_DEFAULT))
            images = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
            request.inputs[UINT8_INPUT].CopyFrom(tf.make_tensor_proto(images))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
