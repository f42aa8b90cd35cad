"""Bounds on what a client controls: images refused from their headers before decoding, batch size,
pixels per request, and how many requests decode at once, over real loopback gRPC and HTTP."""

import base64
import io
import json
import struct
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

pytestmark = pytest.mark.slow

#: The issue's image: a valid 388 KB PNG that declares 20000 x 20000 pixels (400 M; 2 GB to decode and convert).
HUGE_SIDE = 20000


@pytest.fixture(scope="module")
def defaults():
    """The default limits (the session server runs with them)."""
    from spanet.serving.config import RequestLimits

    return RequestLimits()


@pytest.fixture(scope="module")
def huge_png(blank_png) -> bytes:
    return blank_png(HUGE_SIDE, HUGE_SIDE)


@pytest.fixture()
def stub(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _request(images, signature="serving_default", alias="images") -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "spanet"
    request.model_spec.signature_name = signature
    request.inputs[alias].CopyFrom(tf.make_tensor_proto(list(images), dtype=tf.string))
    return request


def _refused(stub, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(request, timeout=60)
    return raised.value


def _rest_predict(port: int, images) -> tuple:
    body = json.dumps({"instances": [{"b64": base64.b64encode(i).decode()} for i in images]}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/models/spanet:predict", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def _encode(fmt: str, array: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _gif_frame_offset(gif: bytes) -> int:
    """Where a GIF's first image descriptor starts (after the screen, its colour table and any extensions)."""
    at = 13 + (3 << ((gif[10] & 7) + 1) if gif[10] & 0x80 else 0)
    while gif[at] == 0x21:
        at += 2
        while gif[at]:
            at += 1 + gif[at]
        at += 1
    assert gif[at] == 0x2C
    return at


def test_image_headers_are_read_for_every_format_the_model_decodes(blank_png):
    """PNG, JPEG, GIF and BMP (what tf.io.decode_image accepts) give their declared size without decoding."""
    from spanet.serving.limits import read_image_header

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    jpeg = _encode("JPEG", rgb)
    frames = [Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)) for _ in range(4)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    bmp = bytearray(_encode("BMP", rgb))
    struct.pack_into("<i", bmp, 22, -30)  # a top-down BMP: negative height
    cases = {
        "grey PNG": (_encode("PNG", rgb[:, :, 0]), ("PNG", 40, 30, 1200)),
        "RGB PNG": (_encode("PNG", rgb), ("PNG", 40, 30, 1200)),
        "JPEG": (jpeg, ("JPEG", 40, 30, 1200)),
        "progressive JPEG": (_encode("JPEG", rgb, progressive=True), ("JPEG", 40, 30, 1200)),
        # libjpeg skips bytes between segments: the frame header is found behind them too
        "JPEG with junk before a marker": (jpeg[:20] + b"junk\xff\x00junk" + jpeg[20:], ("JPEG", 40, 30, 1200)),
        # giflib allocates every frame before TensorFlow keeps the first: the screen plus four frames
        "animated GIF": (gif.getvalue(), ("GIF", 40, 30, 5 * 1200)),
        "BMP": (bytes(bmp), ("BMP", 40, 30, 1200)),
    }
    for name, (data, (fmt, width, height, pixels)) in cases.items():
        header = read_image_header(data)
        assert (header.format, header.width, header.height, header.pixels) == (fmt, width, height, pixels), name
        assert tf.io.decode_image(data, channels=3, expand_animations=False).shape[:2] == (height, width), name
    assert read_image_header(gif.getvalue()).frames == 4
    # the first 33 bytes (signature and IHDR) are all it takes
    assert read_image_header(blank_png(HUGE_SIDE, 8)[:33]).pixels == HUGE_SIDE * 8
    for other in (b"", b"not an image", b"\xff\xd8junk", b"GIF7", b"RIFF\0\0\0\0WEBPVP8 "):
        assert read_image_header(other) is None  # not a format decode_image knows: left to the model
    for cut, why in (
        (jpeg[:2] + b"\xff\xd9", "before it ends"),
        (jpeg[:20], "ends before its frame header"),
        (b"\x89PNG\r\n\x1a\n\0\0", "IHDR"),
        (b"GIF89a\x10\x00", "cut short"),
        (b"BM\0\0", "cut short"),
        (blank_png(0, 5), "an empty image"),
    ):
        with pytest.raises(ValueError, match=why):
            read_image_header(cut)


def test_image_over_the_pixel_limit_is_refused_from_its_header_over_grpc_and_rest(
    server, stub, huge_png, sample_images, defaults
):
    """The issue's 388 KB PNG declaring 20000 x 20000: INVALID_ARGUMENT naming its index and size, never decoded."""
    assert len(huge_png) < 400_000
    expected = (
        "input images[1]: a PNG of 20000x20000 pixels (400000000 pixels to decode) is over the limit of "
        f"{defaults.max_image_pixels} pixels per image (max_image_pixels)"
    )
    error = _refused(stub, _request([sample_images[0], huge_png]))
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, expected)
    assert _rest_predict(server.rest_port, [sample_images[0], huge_png]) == (400, {"error": expected})
    # the same image inside a serialized tf.Example (the serving_examples signature)
    example = tf.train.Example(
        features=tf.train.Features(feature={"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[huge_png]))})
    )
    error = _refused(stub, _request([example.SerializeToString()], "serving_examples", "examples"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("input examples[0] feature image[0]: a PNG of 20000x20000 pixels")
    assert stub.Predict(_request(sample_images[:2]), timeout=60).outputs["probabilities"].tensor_shape.dim[0].size == 2


def test_oversized_jpeg_gif_and_bmp_headers_are_refused(stub, sample_images):
    """Each format's declared size is checked: a JPEG SOF, a GIF screen or frame count, a BMP header."""
    grey = np.full((16, 16), 128, np.uint8)
    jpeg = bytearray(_encode("JPEG", grey))
    sof = jpeg.index(b"\xff\xc0")
    struct.pack_into(">HH", jpeg, sof + 5, 60000, 60000)  # height, width
    bmp = bytearray(_encode("BMP", np.stack([grey] * 3, axis=2)))
    struct.pack_into("<ii", bmp, 18, 30000, 30000)
    gif = _encode("GIF", grey)
    start = _gif_frame_offset(gif)
    assert gif[-1] == 0x3B
    many_frames = gif[:start] + gif[start:-1] * 70000 + b"\x3b"  # one 16x16 frame, 70000 times
    for image, declared in (
        (bytes(jpeg), "a JPEG of 60000x60000 pixels"),
        (bytes(bmp), "a BMP of 30000x30000 pixels"),
        (many_frames, "a GIF of 16x16 pixels with 70000 frames"),
    ):
        error = _refused(stub, _request([sample_images[0], image]))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details().startswith(f"input images[1]: {declared}"), error.details()
        assert "max_image_pixels" in error.details()


def test_too_many_images_or_pixels_in_one_request_are_refused(server, stub, sample_images, blank_png, defaults):
    """The default limits on images per request and on declared pixels per request."""
    count = defaults.max_batch_images + 1
    many = [sample_images[i % 12] for i in range(count)]
    expected = (
        f"input images: {count} values in one request, over the limit of {defaults.max_batch_images} "
        f"(max_batch_images); send smaller batches"
    )
    error = _refused(stub, _request(many))
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, expected)
    assert _rest_predict(server.rest_port, many) == (400, {"error": expected})

    side = int(defaults.max_image_pixels**0.5)
    at_limit = blank_png(side, side)  # each one is allowed; enough of them together are not
    n = defaults.max_batch_pixels // side**2 + 1
    error = _refused(stub, _request([at_limit] * n))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        f"input images: its {n} images declare {n * side**2} pixels together, over the limit of "
        f"{defaults.max_batch_pixels} per request (max_batch_pixels); send fewer or smaller images"
    )


def test_bad_image_bytes_are_invalid_argument_never_internal(server, stub, sample_images):
    """Bytes that are no image, or an image cut short or corrupt: INVALID_ARGUMENT (HTTP 400), and the
    server goes on."""
    png, jpeg = sample_images[0], sample_images[-1]
    corrupt_png = bytearray(png)
    corrupt_png[40:60] = b"\xff" * 20  # inside IDAT
    bad = {
        "empty": b"",
        "text": b"not an image",
        "PNG signature only": png[:8],
        "PNG header only": png[:33],
        "PNG cut in its data": png[: len(png) // 2],
        "PNG with corrupt data": bytes(corrupt_png),
        "JPEG start only": jpeg[:3],
        "JPEG cut in its data": jpeg[: len(jpeg) // 2],
        "GIF cut short": b"GIF89a\x10\x00\x10",
        "BMP cut short": b"BM" + b"\0" * 30,
        "random bytes": np.random.default_rng(1).bytes(5000),
    }
    for name, data in bad.items():
        error = _refused(stub, _request([data]))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, error.code(), error.details())
        assert "\n" not in error.details(), name
        status, payload = _rest_predict(server.rest_port, [data])
        assert status == 400 and "\n" not in payload["error"], (name, status, payload)
    assert stub.Predict(_request(sample_images[:1]), timeout=60).model_spec.version.value > 0


# -- concurrency: a server of its own, with one decoding slot, two workers and no gRPC queue --------------------------


@pytest.fixture(scope="module")
def narrow_server(serving_base):
    from spanet.serving.config import RequestLimits, ServerConfig
    from spanet.serving.server import LocalServer

    config = ServerConfig(
        model_base_path=str(serving_base),
        host="127.0.0.1",
        port=0,
        rest_port=0,
        poll_interval_s=3600,
        max_workers=2,
        max_queued_rpcs=0,
        limits=RequestLimits(max_concurrent_predictions=1, max_queue_wait_s=5.0),
    )
    with LocalServer(config) as running:
        yield running


def test_decoding_is_bounded_others_wait_then_get_resource_exhausted(narrow_server, sample_images):
    """One request decodes at a time: others wait for the slot; past the wait, or past the gRPC queue,
    RESOURCE_EXHAUSTED."""
    server = narrow_server
    good = _request(sample_images[:2])
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        stub.Predict(good, timeout=60)
        with server.guard.slot():  # the one slot is taken: requests wait for it
            waiting = [stub.Predict.future(good, timeout=60) for _ in range(2)]
            while server.guard.waiting < 2 and not any(f.done() for f in waiting):
                time.sleep(0.01)
            assert server.guard.waiting == 2
            error = _refused(stub, good)  # both workers are taken and nothing may queue: refused at once
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        for future in waiting:  # the slot is free again: both waiting requests are answered
            assert future.result().outputs["probabilities"].tensor_shape.dim[0].size == 2

        results = {}

        def rest() -> None:
            results["rest"] = _rest_predict(server.rest_port, sample_images[:1])

        with server.guard.slot():  # held past the queue wait: RESOURCE_EXHAUSTED over gRPC, 429 over REST
            thread = threading.Thread(target=rest)
            thread.start()
            error = _refused(stub, good)
            thread.join(timeout=60)
        busy = (
            "server busy: 1 requests are decoding and running (max_concurrent_predictions) "
            "and none finished within 5 s; retry later"
        )
        assert (error.code(), error.details()) == (grpc.StatusCode.RESOURCE_EXHAUSTED, busy)
        assert results["rest"] == (429, {"error": busy})
        assert stub.Predict(good, timeout=60).outputs["probabilities"].tensor_shape.dim[0].size == 2
