"""TF Serving warm-up records for the exported model (``assets.extra/tf_serving_warmup_requests``).

TF Serving replays these requests when it loads a version (``--enable_model_warmup``, on by
default), before the version takes traffic: the first real request then does not pay for graph
initialisation and kernel selection. Each record is a ``PredictionLog`` holding a ``PredictRequest``
on ``serving_default`` whose ``images`` input is a batch of one blank wafer map (a disc of pass dies)
encoded as PNG, once per batch size; with server-side batching, those are the allowed batch sizes.

TensorFlow is imported inside the functions so that the batch sizes can be read without it.
"""

from __future__ import annotations

import os
import tempfile
from typing import Iterable, List, Sequence


from spanet.serving.contract import DEFAULT_SIGNATURE as WARMUP_SIGNATURE  # the records call it
from spanet.serving.contract import IMAGES_INPUT as WARMUP_INPUT
from spanet.serving.contract import WARMUP_BATCH_SIZES, WARMUP_FILE  # noqa: F401


def blank_wafer_png(height: int, width: int, channels: int = 1) -> bytes:
    """A defect-free wafer map as PNG: off-wafer 0 outside a centred disc of pass dies (128)."""
    import numpy as np

    from spanet.data.classes import OFF_WAFER_LEVEL, PASS_DIE_LEVEL
    from spanet.data.imageio import encode_png

    rows, cols = np.mgrid[0:height, 0:width]
    radius = min(height, width) / 2.0
    inside = (rows + 0.5 - height / 2.0) ** 2 + (cols + 0.5 - width / 2.0) ** 2 <= radius**2
    image = np.where(inside, PASS_DIE_LEVEL, OFF_WAFER_LEVEL).astype(np.uint8)
    if channels == 3:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return encode_png(image)


def warmup_logs(model_name: str, image: bytes, batch_sizes: Sequence[int] = WARMUP_BATCH_SIZES) -> List["object"]:
    """One ``PredictionLog`` per batch size, each a ``serving_default`` request of ``image`` repeated."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    if not model_name:
        raise ValueError("warm-up requests need the served model's name")
    if not batch_sizes or any(int(size) < 1 for size in batch_sizes):
        raise ValueError(f"warm-up batch sizes must be integers >= 1; got {list(batch_sizes)}")
    logs = []
    for size in batch_sizes:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = WARMUP_SIGNATURE
        request.inputs[WARMUP_INPUT].CopyFrom(
            tf.make_tensor_proto([image] * int(size), dtype=tf.string, shape=[int(size)])
        )
        logs.append(prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request)))
    return logs


def tfrecord_bytes(records: Iterable[bytes]) -> bytes:
    """``records`` framed as a TFRecord file (uncompressed, as TF Serving reads the warm-up file)."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="warmup-") as directory:
        path = os.path.join(directory, "records")
        with tf.io.TFRecordWriter(path) as writer:
            for record in records:
                writer.write(record)
        with open(path, "rb") as handle:
            return handle.read()


def warmup_file_bytes(
    model_name: str, height: int, width: int, channels: int = 1, batch_sizes: Sequence[int] = WARMUP_BATCH_SIZES
) -> bytes:
    """The content of ``assets.extra/tf_serving_warmup_requests`` for a model of this input size."""
    image = blank_wafer_png(height, width, channels)
    return tfrecord_bytes(log.SerializeToString() for log in warmup_logs(model_name, image, batch_sizes))


def read_warmup_logs(path: str) -> List["object"]:
    """The ``PredictionLog`` records of a warm-up file (for checks and tests)."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    return [
        prediction_log_pb2.PredictionLog.FromString(raw) for raw in tf.data.TFRecordDataset(path).as_numpy_iterator()
    ]
