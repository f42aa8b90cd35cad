"""TF Serving warm-up records: built as PredictionLog records on serving_default, written by the
Trainer into every exported model, and each one answered when replayed against the pushed model."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from components.warmup import WARMUP_BATCH_SIZES, WARMUP_FILE, blank_wafer_png, read_warmup_logs, warmup_file_bytes
from spanet.data.imageio import decode_image


def test_warmup_file_is_prediction_logs_of_a_blank_wafer_at_each_batch_size(tmp_path):
    path = tmp_path / "tf_serving_warmup_requests"
    path.write_bytes(warmup_file_bytes("wafer-net", 40, 48))
    logs = read_warmup_logs(str(path))
    assert [log.WhichOneof("log_type") for log in logs] == ["predict_log"] * len(WARMUP_BATCH_SIZES)
    for log, size in zip(logs, WARMUP_BATCH_SIZES):
        request = log.predict_log.request
        assert (request.model_spec.name, request.model_spec.signature_name) == ("wafer-net", "serving_default")
        assert list(request.inputs) == ["images"]
        images = tf.make_ndarray(request.inputs["images"])
        assert images.shape == (size,) and len(set(images.tolist())) == 1
        wafer = decode_image(images[0])
        assert wafer.shape == (40, 48) and set(np.unique(wafer)) == {0, 128}  # off-wafer and pass dies only
        assert wafer[20, 24] == 128 and wafer[0, 0] == 0


def test_rgb_maps_and_bad_arguments():
    assert decode_image(blank_wafer_png(16, 16, channels=3)).shape == (16, 16, 3)
    with pytest.raises(ValueError, match="model's name"):
        warmup_file_bytes("", 16, 16)
    with pytest.raises(ValueError, match="batch sizes must be integers >= 1"):
        warmup_file_bytes("spanet", 16, 16, batch_sizes=(0,))


def _latest_version(base_dir):
    versions = sorted((p for p in base_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    assert versions, f"no version under {base_dir}"
    return versions[-1]


@pytest.mark.slow
def test_the_pushed_model_carries_warmup_records_that_it_answers(pushed_model_dir, tiny_pipeline_run):
    config = tiny_pipeline_run.config
    version = _latest_version(pushed_model_dir)
    warmup = version / WARMUP_FILE
    assert warmup.is_file(), "the exported model has no assets.extra/tf_serving_warmup_requests"
    records = [
        prediction_log_pb2.PredictionLog.FromString(raw)
        for raw in tf.data.TFRecordDataset(str(warmup)).as_numpy_iterator()
    ]
    assert len(records) == len(WARMUP_BATCH_SIZES)

    model = tf.saved_model.load(str(version))
    for record in records:
        request = record.predict_log.request
        assert request.model_spec.name == pushed_model_dir.name == config.model_name
        signature = model.signatures[request.model_spec.signature_name]
        assert set(request.inputs) == set(signature.structured_input_signature[1])
        inputs = {name: tf.constant(tf.make_ndarray(proto)) for name, proto in request.inputs.items()}
        outputs = signature(**inputs)
        batch = inputs["images"].shape[0]
        assert outputs["probabilities"].shape == (batch, len(config.class_names))
        assert np.allclose(outputs["probabilities"].numpy().sum(axis=1), 1.0, atol=1e-4)
        assert outputs["class_name"].shape == (batch,) and outputs["defect_score"].shape == (batch,)
