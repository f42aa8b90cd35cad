"""The client against the local server over real loopback gRPC, on the model the Trainer exported."""

import base64
import json
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from spanet.serving.client import ServingClient, ServingRequestError, ServingUnavailableError
from spanet.serving.config import ClientConfig, RetryPolicy

pytestmark = pytest.mark.slow

OVER_LIMIT = 5 * 1024 * 1024  # the test server accepts 4 MiB


def _assert_matches_reference(predictions, reference, rows=None):
    rows = range(len(predictions)) if rows is None else rows
    names = reference["class_names"]
    for p, i in zip(predictions, rows):
        assert p.class_name == reference["class_name"][i].decode()
        assert list(p.probabilities) == names
        np.testing.assert_allclose(
            [p.probabilities[n] for n in names], reference["probabilities"][i], atol=1e-5, rtol=0
        )
        assert p.defective == bool(reference["defective"][i])
        assert p.defect_score == pytest.approx(float(reference["defect_score"][i]), abs=1e-5)


def test_metadata_discovers_the_signature(client, served_version):
    info = client.metadata()
    assert info.model_version == served_version
    assert info.inputs == {"images": ("DT_STRING", (-1,))}
    assert {"probabilities", "class_id", "class_name", "defective", "defect_score"} <= set(info.outputs)
    assert client.image_input_name() == "images"


def test_client_answers_equal_the_in_process_model(
    client, sample_images, reference_outputs, served_version, tiny_class_mix
):
    # batch_size 5: three requests of 5, 5 and 4 images (grey PNGs of 26-64 dies, an RGB PNG, a JPEG)
    predictions = client.predict_images(sample_images)
    assert len(predictions) == len(sample_images) == 14
    assert {p.model_version for p in predictions} == {served_version}
    _assert_matches_reference(predictions, reference_outputs)
    # the tiny model knows its three classes: it must get the synthetic maps right
    assert {p.class_name for p in predictions} == set(tiny_class_mix)


def test_wafer_map_arrays_are_encoded_client_side(server, wafer_records, reference_outputs):
    from spanet.data.convention import image_to_die_map

    die_maps = [image_to_die_map(r.image) for r in wafer_records[:4]]
    # the class order is not in the signature metadata: given here, as users of a deployed model do
    config = ClientConfig(target=f"127.0.0.1:{server.port}", class_names=tuple(reference_outputs["class_names"]))
    client = ServingClient(config)
    _assert_matches_reference(client.predict_wafer_maps(die_maps), reference_outputs, rows=range(4))
    _assert_matches_reference(
        client.predict_images([r.image for r in wafer_records[:4]]), reference_outputs, rows=range(4)
    )
    with pytest.raises(ValueError, match="wafer map 1: unknown die value"):
        client.predict_wafer_maps([die_maps[0], np.full((8, 8), 7)])
    client.close()


def test_model_status_and_wait_until_ready(client, served_version):
    assert client.wait_until_ready(timeout_s=5) == served_version
    assert client.model_status() == [(served_version, "AVAILABLE")]


def _good_request(image: bytes, version=None) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "spanet"
    request.model_spec.signature_name = "serving_default"
    if version is not None:
        request.model_spec.version.value = version
    request.inputs["images"].CopyFrom(tf.make_tensor_proto([image], dtype=tf.string))
    return request


def _bad_predict(case: str, image: bytes, version: int) -> predict_pb2.PredictRequest:
    request = _good_request(image)
    if case == "unknown model":
        request.model_spec.name = "no-such-model"
    elif case == "unknown version":
        request.model_spec.version.value = version + 1000
    elif case == "unknown signature":
        request.model_spec.signature_name = "no_such_signature"
    elif case == "wrong input name":
        request.inputs["image"].CopyFrom(request.inputs.pop("images"))
    elif case == "missing input":
        del request.inputs["images"]
    elif case == "wrong dtype":
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros([1], np.float32)))
    elif case == "wrong shape":
        request.inputs["images"].CopyFrom(tf.make_tensor_proto([[image]], dtype=tf.string))
    elif case == "undecodable image":
        request.inputs["images"].CopyFrom(tf.make_tensor_proto([b"this is not a PNG"], dtype=tf.string))
    elif case == "unknown output":
        request.output_filter.append("no_such_output")
    elif case == "over the size limit":
        request.inputs["images"].CopyFrom(tf.make_tensor_proto([b"\0" * OVER_LIMIT], dtype=tf.string))
    return request


PREDICT_CASES = {
    "unknown model": (grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(no-such-model)"),
    "unknown version": (grpc.StatusCode.NOT_FOUND, "Servable not found for request: Specific(spanet, "),
    # TF Serving answers FAILED_PRECONDITION for an unknown signature key (predict_util.cc)
    "unknown signature": (grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature key "no_such_signature" not found.'),
    "wrong input name": (grpc.StatusCode.INVALID_ARGUMENT, "input tensor alias not found in signature: image."),
    "missing input": (grpc.StatusCode.INVALID_ARGUMENT, "input size does not match signature"),
    "wrong dtype": (grpc.StatusCode.INVALID_ARGUMENT, "to be string but float is provided"),
    "wrong shape": (grpc.StatusCode.INVALID_ARGUMENT, "has shape [1,1], but the signature expects [?]"),
    # TensorFlow's InvalidArgumentError from the model's decode op, passed on with its code
    "undecodable image": (grpc.StatusCode.INVALID_ARGUMENT, "Unknown image file format"),
    "unknown output": (grpc.StatusCode.INVALID_ARGUMENT, "output tensor alias not found in signature: no_such_output"),
    "over the size limit": (grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than max"),
}


@pytest.fixture()
def stubs(server):
    options = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
    with grpc.insecure_channel(f"127.0.0.1:{server.port}", options=options) as channel:
        yield (
            prediction_service_pb2_grpc.PredictionServiceStub(channel),
            model_service_pb2_grpc.ModelServiceStub(channel),
        )


def _assert_still_serves(prediction, image, reference):
    response = prediction.Predict(_good_request(image), timeout=30)
    np.testing.assert_allclose(
        tf.make_ndarray(response.outputs["probabilities"]), reference["probabilities"][:1], atol=1e-5
    )


@pytest.mark.parametrize("case", sorted(PREDICT_CASES))
def test_bad_predict_gets_tf_serving_status_and_server_goes_on(
    case, stubs, sample_images, served_version, reference_outputs
):
    prediction, _ = stubs
    code, text = PREDICT_CASES[case]
    with pytest.raises(grpc.RpcError) as raised:
        prediction.Predict(_bad_predict(case, sample_images[0], served_version), timeout=30)
    assert raised.value.code() == code, raised.value.details()
    assert text in raised.value.details()
    _assert_still_serves(prediction, sample_images[0], reference_outputs)


def test_bad_status_metadata_and_classify_requests(stubs, sample_images, served_version, reference_outputs):
    prediction, models = stubs

    def code_of(call, request):
        with pytest.raises(grpc.RpcError) as raised:
            call(request, timeout=30)
        return raised.value.code(), raised.value.details()

    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "no-such-model"
    assert code_of(models.GetModelStatus, status) == (
        grpc.StatusCode.NOT_FOUND,
        "Could not find any versions of model no-such-model",
    )
    status.model_spec.name = "spanet"
    status.model_spec.version.value = served_version + 1000
    assert code_of(models.GetModelStatus, status)[0] == grpc.StatusCode.NOT_FOUND

    metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    metadata.model_spec.name = "no-such-model"
    assert code_of(prediction.GetModelMetadata, metadata)[0] == grpc.StatusCode.NOT_FOUND
    metadata.model_spec.name = "spanet"
    del metadata.metadata_field[:]
    metadata.metadata_field.append("graph")
    assert code_of(prediction.GetModelMetadata, metadata) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Metadata field graph is not supported",
    )

    # serving_default is a predict signature: TF Serving refuses Classify on it
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "spanet"
    classify.input.example_list.examples.add()
    code, details = code_of(prediction.Classify, classify)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "Expected classification signature method_name" in details
    _assert_still_serves(prediction, sample_images[0], reference_outputs)


def test_client_turns_failures_into_clear_errors(client, free_port):
    with pytest.raises(ServingRequestError) as raised:
        client.predict_images([b"not an image"])
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    config = ClientConfig(
        target=f"127.0.0.1:{free_port}", timeout_s=2, retry=RetryPolicy(max_attempts=3, initial_backoff_s=0.01)
    )
    with ServingClient(config) as unreachable:
        with pytest.raises(ServingUnavailableError, match=f"127.0.0.1:{free_port} is unavailable .*3 attempts"):
            unreachable.model_status()
        with pytest.raises(
            ServingUnavailableError, match=f"cannot reach TF Serving at 127.0.0.1:{free_port} within 0.5 s"
        ):
            unreachable.wait_until_ready(timeout_s=0.5)


def test_rest_status_metadata_and_predict(server, served_version, sample_images, reference_outputs):
    root = f"http://127.0.0.1:{server.rest_port}/v1/models"
    with urllib.request.urlopen(f"{root}/spanet", timeout=10) as response:
        assert response.status == 200
        assert json.load(response) == {
            "model_version_status": [
                {
                    "version": str(served_version),
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ]
        }
    with urllib.request.urlopen(f"{root}/spanet/metadata", timeout=10) as response:
        assert (
            "images" in json.load(response)["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
        )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(f"{root}/no-such-model", timeout=10)
    assert raised.value.code == 404 and "no-such-model" in json.load(raised.value)["error"]

    body = json.dumps(
        {"instances": [{"b64": base64.b64encode(image).decode()} for image in sample_images[:3]]}
    ).encode()
    request = urllib.request.Request(f"{root}/spanet:predict", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        rows = json.load(response)["predictions"]
    assert [row["class_name"] for row in rows] == [n.decode() for n in reference_outputs["class_name"][:3]]
    np.testing.assert_allclose(
        [row["probabilities"] for row in rows], reference_outputs["probabilities"][:3], atol=1e-5
    )


def test_inputs_unlike_every_class_come_back_unknown_over_grpc_and_rest(client, server):
    from spanet.data.probes import unknown_probes

    probes = unknown_probes()
    images = probes["noise"][:2] + probes["blank"][:1] + probes["photograph"]
    for prediction in client.predict_images(images):
        assert prediction.unknown and prediction.class_name == "unknown" and prediction.defective
        assert prediction.confidence is None and prediction.familiarity is not None
    root = f"http://127.0.0.1:{server.rest_port}/v1/models"
    body = json.dumps({"instances": [{"b64": base64.b64encode(image).decode()} for image in images]}).encode()
    request = urllib.request.Request(f"{root}/spanet:predict", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        rows = json.load(response)["predictions"]
    assert [(row["class_name"], row["unknown"], row["defective"]) for row in rows] == [("unknown", True, True)] * len(
        images
    )
