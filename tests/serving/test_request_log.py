"""Request logging of the local server: sampled Predict calls (gRPC and REST) as TF Serving PredictionLogs."""

import base64
import json
import logging
import urllib.request

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from spanet.serving.client import ServingClient, ServingRequestError
from spanet.serving.config import ClientConfig, RequestLogConfig, ServerConfig
from spanet.serving.request_log import LOG_SUFFIX, TMP_SUFFIX, RequestLogger, log_files, read_prediction_logs
from spanet.serving.server import LocalServer
from spanet.serving.tensors import from_tensor_proto

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def logged_server(serving_base, tmp_path_factory):
    """A local server logging every Predict call (gRPC and REST) to its own folder."""
    folder = tmp_path_factory.mktemp("request_log")
    config = ServerConfig(
        model_base_path=str(serving_base),
        host="127.0.0.1",
        port=0,
        rest_port=0,
        poll_interval_s=0.5,
        request_log=RequestLogConfig(directory=str(folder), sampling_rate=1.0, seed=0),
    )
    with LocalServer(config) as running:
        yield running


def _client(server) -> ServingClient:
    return ServingClient(ClientConfig(target=f"127.0.0.1:{server.port}", timeout_s=30, batch_size=5))


def test_grpc_and_rest_calls_are_logged_as_prediction_logs(logged_server, sample_images, served_version):
    logger = logged_server.request_log
    with _client(logged_server) as client:
        predictions = client.predict_images(sample_images[:5])  # one Predict of 5 images
    body = json.dumps({"instances": [{"b64": base64.b64encode(sample_images[5]).decode()}]}).encode()
    url = f"http://127.0.0.1:{logged_server.rest_port}/v1/models/spanet:predict"
    with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"), timeout=30) as answer:
        rest_answer = json.loads(answer.read())
    assert log_files(logger.directory) == []  # the open file is not visible to readers yet
    logger.rotate()
    [path] = log_files(logger.directory)
    assert path.endswith(LOG_SUFFIX) and not path.endswith(TMP_SUFFIX)
    records = list(read_prediction_logs(logger.directory))
    assert len(records) == 2 and all(isinstance(r, prediction_log_pb2.PredictionLog) for r in records)
    for record, sent in zip(records, (sample_images[:5], sample_images[5:6])):
        assert record.WhichOneof("log_type") == "predict_log"
        meta = record.log_metadata
        assert (meta.model_spec.name, meta.model_spec.version.value) == ("spanet", served_version)
        assert meta.model_spec.signature_name == "serving_default"
        assert meta.sampling_config.sampling_rate == 1.0 and list(meta.saved_model_tags) == ["serve"]
        assert meta.timestamp_secs > 0
        request, response = record.predict_log.request, record.predict_log.response
        assert list(from_tensor_proto(request.inputs["images"])) == list(sent)  # the request's inputs, byte for byte
        assert {"probabilities", "class_name", "class_id", "defective", "defect_score"} <= set(response.outputs)
    names = [n.decode() for n in from_tensor_proto(records[0].predict_log.response.outputs["class_name"])]
    assert names == [p.class_name for p in predictions]
    np.testing.assert_allclose(
        from_tensor_proto(records[1].predict_log.response.outputs["probabilities"])[0],
        rest_answer["predictions"][0]["probabilities"],
        atol=1e-6,
    )
    assert (logger.seen, logger.logged, logger.failures) == (2, 2, 0)


def test_failed_calls_are_not_logged_and_a_logging_failure_never_fails_a_call(
    logged_server, sample_images, monkeypatch, caplog
):
    logger = logged_server.request_log
    logged_before, failures_before = logger.logged, logger.failures
    with _client(logged_server) as client:
        with pytest.raises(ServingRequestError):
            client.predict_images([b"not an image"])  # INVALID_ARGUMENT: nothing to log
        assert logger.logged == logged_before

        def broken(record):
            raise OSError("disk full")

        monkeypatch.setattr(logger, "_write", broken)
        with caplog.at_level(logging.WARNING, logger="spanet.serving"):
            first = client.predict_images(sample_images[:2])
            second = client.predict_images(sample_images[:2])
    assert len(first) == len(second) == 2  # the calls were answered
    assert logger.failures - failures_before == 2 and logger.logged == logged_before
    warnings = [r for r in caplog.records if "request log" in r.getMessage()]
    assert len(warnings) == 1  # warned once per logger, not per call


def _request_and_response():
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "spanet"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto([b"\x89PNG fake"], dtype=tf.string))
    response = predict_pb2.PredictResponse()
    response.model_spec.name = "spanet"
    response.model_spec.version.value = 7
    response.model_spec.signature_name = "serving_default"
    return request, response


def _picks(tmp_path, name, rate, seed, calls):
    logger = RequestLogger(RequestLogConfig(directory=str(tmp_path / name), sampling_rate=rate, seed=seed))
    request, response = _request_and_response()
    picks = [logger.log_predict(request, response) for _ in range(calls)]
    logger.close()
    return picks, logger


def test_sampling_at_half_logs_about_half_deterministically(tmp_path):
    picks, logger = _picks(tmp_path, "a", 0.5, seed=7, calls=400)
    again, _ = _picks(tmp_path, "b", 0.5, seed=7, calls=400)
    other, _ = _picks(tmp_path, "c", 0.5, seed=8, calls=400)
    assert picks == again and picks != other  # the seed fixes which calls are logged
    assert 170 <= sum(picks) <= 230  # binomial(400, 0.5): mean 200, sd 10
    records = list(read_prediction_logs(logger.directory))
    assert len(records) == sum(picks) == logger.logged
    assert records[0].log_metadata.sampling_config.sampling_rate == 0.5
    assert records[0].log_metadata.model_spec.version.value == 7


def test_files_rotate_by_size_and_only_finished_files_are_read(tmp_path):
    config = RequestLogConfig(directory=str(tmp_path), sampling_rate=1.0, seed=0, max_file_bytes=300)
    logger = RequestLogger(config)
    request, response = _request_and_response()
    for _ in range(5):
        assert logger.log_predict(request, response)
    finished = log_files(str(tmp_path))
    pending = [p.name for p in tmp_path.iterdir() if p.name.endswith(TMP_SUFFIX)]
    assert len(pending) == 1 and len(finished) >= 1
    assert sum(1 for _ in read_prediction_logs(str(tmp_path))) < 5  # the open file is not read
    logger.close()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(TMP_SUFFIX)]
    assert sum(1 for _ in read_prediction_logs(str(tmp_path))) == 5
    assert not logger.log_predict(request, response)  # closed: nothing more is written


@pytest.mark.parametrize("rate", ["0", "1.5", "-0.1", "half", "nan"])
def test_serve_refuses_a_bad_sampling_rate_naming_the_option(rate, tmp_path, capsys):
    from spanet.cli import main

    argv = ["serve", "--model-base-path", str(tmp_path), "--request-log", str(tmp_path / "log")]
    assert main(argv + ["--request-log-sampling", rate]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--request-log-sampling" in err[0]


def test_serve_refuses_sampling_without_a_log_folder(tmp_path, capsys):
    from spanet.cli import main

    assert main(["serve", "--model-base-path", str(tmp_path), "--request-log-sampling", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--request-log" in err[0]
