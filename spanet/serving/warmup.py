"""Warm-up of a freshly loaded version before it takes traffic (TF Serving's --enable_model_warmup).

If the SavedModel has ``assets.extra/tf_serving_warmup_requests`` (PredictionLog TFRecords), its
Predict requests are replayed, as TF Serving does; a failure there fails the load. Otherwise one
small synthetic request runs the default signature (a tiny PNG for string inputs, zeros otherwise)
so that the first real request does not pay for tracing and kernel set-up; that one only logs.
"""

import logging
import os
from typing import Dict

import tensorflow as tf

from spanet.serving.contract import DEFAULT_SIGNATURE, WARMUP_FILE
from spanet.serving.errors import ServingError
from spanet.serving.model_manager import ServableVersion

log = logging.getLogger("spanet.serving")

#: TF Serving replays at most this many warm-up records.
MAX_WARMUP_RECORDS = 1000


def _synthetic_inputs(servable: ServableVersion, signature_name: str) -> Dict[str, tf.Tensor]:
    inputs = {}
    for name, spec in servable.input_specs(signature_name).items():
        dims = [1 if d is None else d for d in (spec.shape.as_list() if spec.shape.rank is not None else [1])]
        if spec.dtype == tf.string:
            png = tf.io.encode_png(tf.fill([8, 8, 1], tf.constant(128, tf.uint8)))
            inputs[name] = tf.fill(dims, png)
        else:
            inputs[name] = tf.zeros(dims, dtype=spec.dtype)
    return inputs


def warm_up(servable: ServableVersion) -> int:
    """Run warm-up requests on `servable`; returns how many ran. Raises if a warm-up file request fails."""
    from spanet.serving.inference import run_signature
    from spanet.serving.tensors import check_inputs

    path = os.path.join(servable.path, WARMUP_FILE)
    if os.path.isfile(path):
        from tensorflow_serving.apis import prediction_log_pb2

        count = 0
        for raw in tf.data.TFRecordDataset(path).take(MAX_WARMUP_RECORDS).as_numpy_iterator():
            record = prediction_log_pb2.PredictionLog.FromString(raw)
            if record.WhichOneof("log_type") != "predict_log":
                continue
            request = record.predict_log.request
            name = request.model_spec.signature_name or DEFAULT_SIGNATURE
            run_signature(servable, name, check_inputs(request.inputs, servable.input_specs(name)))
            count += 1
        return count
    if DEFAULT_SIGNATURE not in servable.functions:
        return 0
    try:
        run_signature(servable, DEFAULT_SIGNATURE, _synthetic_inputs(servable, DEFAULT_SIGNATURE))
    except (ServingError, ValueError, TypeError) as exc:
        log.warning("version %d: synthetic warm-up request failed (%s); serving it anyway", servable.version, exc)
        return 0
    return 1
