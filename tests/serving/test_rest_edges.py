"""The REST port under bad and broken clients, over real loopback sockets: clear 4xx answers, no hang, no traceback.

And the input edges both ports share: an empty batch, and a declared shape that disagrees with the data.
"""

import base64
import json
import socket
import struct
import time
from typing import Dict, Optional, Tuple

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

pytestmark = pytest.mark.slow

#: The REST read timeout of this module's server (short, so that a stalled client costs the test little).
READ_TIMEOUT_S = 2.0
MAX_CONNECTIONS = 4
#: How long the tests wait for an answer the server owes; a hang shows as a socket timeout past it.
ANSWER_WITHIN_S = 15.0
PREDICT_PATH = "/v1/models/spanet:predict"


@pytest.fixture(scope="module")
def edge_server(serving_base):
    from spanet.serving.config import ServerConfig
    from spanet.serving.server import LocalServer

    config = ServerConfig(
        model_base_path=str(serving_base),
        host="127.0.0.1",
        port=0,
        rest_port=0,
        poll_interval_s=3600,
        rest_read_timeout_s=READ_TIMEOUT_S,
        max_rest_connections=MAX_CONNECTIONS,
    )
    with LocalServer(config) as running:
        yield running


def _exchange(port: int, raw: bytes, shut_write: bool = False) -> Tuple[int, Dict]:
    """Send `raw` bytes, read until the server closes: (HTTP status, JSON body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WITHIN_S) as sock:
        sock.sendall(raw)
        if shut_write:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _post(body: bytes, content_length: Optional[str] = "auto", content_type: str = "application/json") -> bytes:
    headers = [f"POST {PREDICT_PATH} HTTP/1.1", "Host: localhost", f"Content-Type: {content_type}"]
    if content_length == "auto":
        content_length = str(len(body))
    if content_length is not None:
        headers.append(f"Content-Length: {content_length}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


def _instances(*images: bytes) -> bytes:
    return json.dumps({"instances": [{"b64": base64.b64encode(i).decode()} for i in images]}).encode()


def _assert_one_line(status: int, payload: Dict, expected_status: int, *fragments: str) -> None:
    assert status == expected_status, payload
    assert set(payload) == {"error"} and "\n" not in payload["error"], payload
    for fragment in fragments:
        assert fragment in payload["error"], payload


def test_bad_bodies_get_400_with_a_message(edge_server, sample_images):
    port = edge_server.rest_port
    good = base64.b64encode(sample_images[0]).decode()
    bad_b64 = json.dumps({"instances": [{"b64": good}, {"b64": "not base64!"}]}).encode()
    _assert_one_line(*_exchange(port, _post(bad_b64)), 400, "instances[1].b64 is not valid base64")
    not_a_string = json.dumps({"instances": [{"b64": 12}]}).encode()
    _assert_one_line(*_exchange(port, _post(not_a_string)), 400, "instances[0].b64 must be a base64 string")
    # a raw PNG sent as the body
    _assert_one_line(
        *_exchange(port, _post(sample_images[0], content_type="image/png")),
        400,
        "request body is not JSON",
        '{"instances": [{"b64"',
    )
    deep = b"[" * 100_000 + b"]" * 100_000
    _assert_one_line(*_exchange(port, _post(deep)), 400, "nested too deeply")
    nested = "x"
    for _ in range(40):  # under json's own recursion limit, over a tensor's 32 dimensions
        nested = [nested]
    nested = json.dumps({"instances": nested}).encode()
    _assert_one_line(*_exchange(port, _post(nested)), 400, "nested more than 32 levels deep")
    _assert_one_line(*_exchange(port, _post(b'{"instances": [')), 400, "JSON Parse error")


@pytest.mark.parametrize("value", ["abc", "-1", "1e3", " ", "12, 13"])
def test_bad_content_length_gets_400(edge_server, value):
    status, payload = _exchange(edge_server.rest_port, _post(b"{}", content_length=value))
    _assert_one_line(status, payload, 400, "Content-Length", "is not one non-negative integer")


def test_missing_content_length_gets_411(edge_server):
    _assert_one_line(*_exchange(edge_server.rest_port, _post(b"", content_length=None)), 411, "needs a Content-Length")


def test_body_over_the_limit_gets_413_unread(edge_server):
    """Request bytes are bounded: a Content-Length over max_message_bytes is refused before the body is read."""
    limit = edge_server.config.max_message_bytes
    status, payload = _exchange(edge_server.rest_port, _post(b"", content_length=str(limit + 1)))
    _assert_one_line(status, payload, 413, f"request of {limit + 1} bytes is over the {limit}-byte limit")


def test_short_body_gets_408_after_the_read_timeout_not_a_hang(edge_server):
    """A body shorter than its Content-Length: 408 once the read timeout passes; 400 at once if the client closes."""
    raw = _post(b'{"instances": [', content_length="1000")
    _assert_one_line(
        *_exchange(edge_server.rest_port, raw), 408, "got 15 of the 1000 bytes", f"within {READ_TIMEOUT_S:g} s"
    )
    _assert_one_line(*_exchange(edge_server.rest_port, raw, shut_write=True), 400, "ended after 15 of the 1000 bytes")


def test_dropped_connections_log_no_traceback(edge_server, sample_images, capfd, caplog):
    """Clients that hang up (RST) before, during or after their request: no traceback, and the port goes on."""
    caplog.set_level("DEBUG", logger="spanet.serving")
    port = edge_server.rest_port
    requests = [
        _post(_instances(*sample_images[:4])),
        b"GET /v1/models/spanet HTTP/1.1\r\nHost: x\r\n\r\n",
        _post(_instances(*sample_images[:4]))[:60],
        b"GE",
    ]
    for raw in requests * 3:
        sock = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WITHIN_S)
        sock.sendall(raw)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST
        sock.close()
    status, payload = _exchange(port, _post(_instances(sample_images[0])))  # the port goes on
    assert status == 200 and len(payload["predictions"]) == 1
    time.sleep(0.5)  # let the handler threads of the dropped connections finish
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err, err
    assert [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= 30] == []


def test_connections_over_the_limit_get_503(edge_server):
    """Open REST connections are bounded: past max_rest_connections a new one is answered 503 and closed."""
    port = edge_server.rest_port
    idle = [socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WITHIN_S) for _ in range(MAX_CONNECTIONS)]
    try:
        status, payload = _exchange(port, b"")
        _assert_one_line(status, payload, 503, f"{MAX_CONNECTIONS} REST connections are open (max_rest_connections)")
    finally:
        for sock in idle:
            sock.close()
    for _ in range(100):  # the idle connections' threads notice the close and free their places
        status, _ = _exchange(port, b"GET /v1/models/spanet HTTP/1.1\r\nHost: x\r\n\r\n")
        if status == 200:
            break
        time.sleep(0.05)
    assert status == 200


# -- input edges shared by gRPC and REST ----------------------------------------------------------------------------


def _request(images, declared: Optional[int] = None) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "spanet"
    proto = tf.make_tensor_proto(list(images), dtype=tf.string, shape=[len(images)])
    if declared is not None:
        proto.tensor_shape.dim[0].size = declared
    request.inputs["images"].CopyFrom(proto)
    return request


def test_empty_batch_and_shape_disagreeing_with_data_are_clear_invalid_argument(edge_server, sample_images):
    with grpc.insecure_channel(f"127.0.0.1:{edge_server.port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        cases = [
            (_request([]), "input images is an empty batch (shape [0]): send at least one value"),
            (_request(sample_images[:2], declared=3), "input images declares shape [3] (3 values) but holds 2 values"),
            (_request(sample_images[:2], declared=1), "input images declares shape [1] (1 values) but holds 2 values"),
            (
                _request(sample_images[:2], declared=0),
                "input images is an empty batch (shape [0]): send at least one value",
            ),
        ]
        for request, message in cases:
            with pytest.raises(grpc.RpcError) as raised:
                stub.Predict(request, timeout=60)
            assert (raised.value.code(), raised.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)
        assert (
            stub.Predict(_request(sample_images[:2]), timeout=60).outputs["probabilities"].tensor_shape.dim[0].size == 2
        )
    port = edge_server.rest_port
    _assert_one_line(*_exchange(port, _post(b'{"instances": []}')), 400, "'instances' is an empty list")
    _assert_one_line(*_exchange(port, _post(b'{"inputs": []}')), 400, "input images is an empty batch (shape [0])")
    _assert_one_line(*_exchange(port, _post(b'{"inputs": {"images": []}}')), 400, "input images is an empty batch")
