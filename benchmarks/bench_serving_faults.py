"""Benchmark the local server under faults: bad inputs, version swaps with partial copies, oversized images.

Starts the real server (``spanet.serving.server.LocalServer``, default limits) in a subprocess on
loopback ports, so that its memory is its own, and measures:

1. bad inputs: gRPC requests and REST bodies a client can get wrong; each must get a clear error
   (gRPC INVALID_ARGUMENT, HTTP 4xx, with a one-line message), never INTERNAL / 500 or a hang;
2. swaps: 8 client threads send good requests while new versions are copied in: one whole, two
   first as a partial copy (variables cut short; variables missing) completed later, one whole;
   failed requests must be 0, and every version must end up served;
3. memory: the server's peak RSS (VmHWM, reset before each load; VmRSS sampled too) while 8
   threads send the issue's 388 KB PNG declaring 20000 x 20000 pixels (refused from its header),
   then while 8 threads send requests at the per-request pixel limit (2 x 4096 x 4096, decoded),
   against the bound the limits promise: baseline + ``RequestLimits.decode_bytes_bound()`` plus
   the bytes of the requests in flight (4 copies each: gRPC buffer, proto, numpy, tensor).

Usage (a few minutes at most on 2 cores):

    python benchmarks/bench_serving_faults.py [--model-base-path DIR]

Without --model-base-path a tiny model is exported: the project's own ``decode_and_resize``
(``tf.io.decode_image``, 64 x 64 grey, as the pushed model decodes) and a linear layer, with the
outputs of ``serving_default`` and a ``serving_examples`` signature (tf.Examples holding ``image``).
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import importlib.util
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import pipeline.startup  # noqa: E402,F401  (the shared start-up, before TensorFlow is imported)
from spanet.serving.contract import DEFAULT_SIGNATURE, EXAMPLES_SIGNATURE  # noqa: E402

CLIENT_THREADS = 8
OVERSIZED_ROUNDS = 5
HUGE_SIDE = 20000
#: The server's REST read timeout here: short, so that the stalled-body case costs 2 s, not 30.
REST_READ_TIMEOUT_S = 2.0
POLL_S = 0.2
MIB = 1024 * 1024


def _load_test_helpers():
    """tests/serving/conftest.py, for its one PNG builder (encode_blank_png)."""
    spec = importlib.util.spec_from_file_location(
        "serving_test_conftest", os.path.join(ROOT, "tests", "serving", "conftest.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the server, in its own process ----------------------------------------------------------------------------------


def serve(base: str) -> int:
    """Child mode: the local server with default limits on free loopback ports; prints them, runs until SIGTERM."""
    import logging

    from spanet.serving.config import ServerConfig
    from spanet.serving.server import LocalServer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = ServerConfig(
        model_base_path=base,
        host="127.0.0.1",
        port=0,
        rest_port=0,
        poll_interval_s=POLL_S,
        rest_read_timeout_s=REST_READ_TIMEOUT_S,
        load_retry_max_s=2.0,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with LocalServer(config) as server:
        print(
            json.dumps(
                {
                    "grpc": server.port,
                    "rest": server.rest_port,
                    "limits": dataclasses.asdict(config.limits),
                    "max_workers": config.max_workers,
                    "max_message_bytes": config.max_message_bytes,
                }
            ),
            flush=True,
        )
        stop.wait()
    return 0


class ServerProcess:
    """The child server: its ports, limits and /proc/<pid>/status (what /proc/self/status shows inside it)."""

    def __init__(self, base: str, log_path: str):
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--serve", base],
            stdout=subprocess.PIPE,
            stderr=self.log,
            cwd=ROOT,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the server did not start; see {log_path}")
        info = json.loads(line)
        self.grpc, self.rest, self.limits = info["grpc"], info["rest"], info["limits"]
        self.max_workers, self.max_message_bytes = info["max_workers"], info["max_message_bytes"]

    def status(self) -> Dict[str, int]:
        """VmRSS and VmHWM of the server process, in bytes."""
        values = {}
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0]) * 1024
        return values

    def reset_peak(self) -> bool:
        """Reset VmHWM to the current RSS (Linux: clear_refs 5); False where that is not allowed."""
        try:
            with open(f"/proc/{self.proc.pid}/clear_refs", "w") as fh:
                fh.write("5")
            return True
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM, then wait (kill past a minute)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class RssSampler:
    """Samples the server's VmRSS every few milliseconds while load runs (a check on VmHWM)."""

    def __init__(self, server: ServerProcess):
        self.server, self.peak, self._stop = server, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.server.status()["VmRSS"])
            time.sleep(0.005)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# -- the model -------------------------------------------------------------------------------------------------------


def export_tiny_model(path: str) -> None:
    """A tiny SavedModel whose serving_default decodes exactly as the pushed model does (components.transform)."""
    import tensorflow as tf

    from components.config import ImageConfig
    from components.transform import decode_and_resize

    image = ImageConfig()

    class Tiny(tf.Module):
        def __init__(self):
            super().__init__()
            size = image.height * image.width * image.channels
            self.weights = tf.Variable(tf.random.stateless_normal([size, 3], seed=[1, 2]) * 0.01)
            self.names = tf.constant(["Center", "Random", "none"])

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve_examples(self, examples):
            parsed = tf.io.parse_example(examples, {"image": tf.io.FixedLenFeature([], tf.string)})
            return self.serve(parsed["image"])

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
        def serve(self, images):
            pixels = decode_and_resize(images, image)
            probabilities = tf.nn.softmax(tf.matmul(tf.reshape(pixels, [tf.shape(pixels)[0], -1]), self.weights))
            class_id = tf.argmax(probabilities, axis=-1)
            p_none = probabilities[:, 2]
            return {
                "probabilities": probabilities,
                "class_id": class_id,
                "class_name": tf.gather(self.names, class_id),
                "defective": p_none < 0.5,
                "defect_score": 1.0 - p_none,
            }

    model = Tiny()
    tf.saved_model.save(
        model, path, signatures={DEFAULT_SIGNATURE: model.serve, EXAMPLES_SIGNATURE: model.serve_examples}
    )


# -- requests --------------------------------------------------------------------------------------------------------


def predict_request(
    images: List[bytes], declared: Optional[int] = None, signature: str = DEFAULT_SIGNATURE, alias: str = "images"
):
    """A PredictRequest of string `images` (optionally declaring another batch size than it holds)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "spanet"
    request.model_spec.signature_name = signature
    proto = tf.make_tensor_proto(list(images), dtype=tf.string, shape=[len(images)])
    if declared is not None:
        proto.tensor_shape.dim[0].size = declared
    request.inputs[alias].CopyFrom(proto)
    return request


def http_exchange(port: int, raw: bytes, timeout_s: float = 30.0) -> Tuple[int, str]:
    """Send raw bytes to the REST port, read to the close: (status, error message or ''); (0, why) on no answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.sendall(raw)
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        return 0, f"no answer: {type(exc).__name__}"
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        return int(head.split()[1]), json.loads(body).get("error", "")
    except (ValueError, IndexError, AttributeError):
        return 0, f"unreadable answer {data[:80]!r}"


def http_post(body: bytes, length: Optional[str] = "auto", content_type: str = "application/json") -> bytes:
    """The raw bytes of a predict POST (Content-Length: the body's, a given text, or none)."""
    lines = ["POST /v1/models/spanet:predict HTTP/1.1", "Host: localhost", f"Content-Type: {content_type}"]
    if length is not None:
        lines.append(f"Content-Length: {len(body) if length == 'auto' else length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def b64_instances(*images: bytes) -> bytes:
    """A row-format REST body of the images as {"b64": ...}."""
    return json.dumps({"instances": [{"b64": base64.b64encode(i).decode()} for i in images]}).encode()


@dataclass
class Outcome:
    case: str
    clear: bool
    answer: str


def bad_inputs(server: ServerProcess, stub, good: bytes, huge: bytes, at_limit: bytes) -> List[Outcome]:
    """Every bad input: gRPC ones must get INVALID_ARGUMENT, REST ones a 4xx, each with a one-line message."""
    import io

    import grpc
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    def encode(fmt: str, array) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format=fmt)
        return buffer.getvalue()

    grey = np.full((16, 16), 128, np.uint8)
    jpeg = bytearray(encode("JPEG", grey))
    struct.pack_into(">HH", jpeg, jpeg.index(b"\xff\xc0") + 5, 60000, 60000)
    bmp = bytearray(encode("BMP", np.stack([grey] * 3, axis=2)))
    struct.pack_into("<ii", bmp, 18, 30000, 30000)
    example = tf.train.Example(
        features=tf.train.Features(feature={"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[huge]))})
    )
    wrong_dtype = predict_request([good])
    wrong_dtype.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros([1], np.float32)))
    grpc_cases: Dict[str, object] = {
        "20000x20000 PNG": predict_request([good, huge]),
        "60000x60000 JPEG header": predict_request([bytes(jpeg)]),
        "30000x30000 BMP header": predict_request([bytes(bmp)]),
        "oversized PNG in a tf.Example": predict_request(
            [example.SerializeToString()], signature=EXAMPLES_SIGNATURE, alias="examples"
        ),
        "257 images": predict_request([good] * 257),
        "3 images at the pixel limit": predict_request([at_limit] * 3),
        "empty batch": predict_request([]),
        "shape [3] with 2 values": predict_request([good, good], declared=3),
        "shape [1] with 2 values": predict_request([good, good], declared=1),
        "not an image": predict_request([b"not an image"]),
        "empty bytes": predict_request([b""]),
        "PNG cut short": predict_request([good[:40]]),
        "PNG signature only": predict_request([good[:8]]),
        "JPEG start only": predict_request([b"\xff\xd8\xff"]),
        "wrong dtype": wrong_dtype,
    }
    outcomes = []
    for case, request in grpc_cases.items():
        if case == "oversized PNG in a tf.Example" and EXAMPLES_SIGNATURE not in server.signatures:
            continue
        try:
            stub.Predict(request, timeout=60)
            outcomes.append(Outcome(f"gRPC {case}", False, "answered OK"))
        except grpc.RpcError as exc:
            details = exc.details() or ""
            clear = exc.code() == grpc.StatusCode.INVALID_ARGUMENT and bool(details) and "\n" not in details
            outcomes.append(Outcome(f"gRPC {case}", clear, f"{exc.code().name}: {details[:110]}"))
    deep = "x"
    for _ in range(40):
        deep = [deep]
    rest_cases = {
        "bad base64": http_post(json.dumps({"instances": [{"b64": "not base64!"}]}).encode()),
        "b64 not a string": http_post(json.dumps({"instances": [{"b64": 12}]}).encode()),
        "raw PNG body": http_post(good, content_type="image/png"),
        "JSON nested 100000 deep": http_post(b"[" * 100000 + b"]" * 100000),
        "instances nested 40 deep": http_post(json.dumps({"instances": deep}).encode()),
        "invalid JSON": http_post(b'{"instances": ['),
        "JSON not an object": http_post(b"[1, 2]"),
        "Content-Length abc": http_post(b"{}", length="abc"),
        "Content-Length -1": http_post(b"{}", length="-1"),
        "no Content-Length": http_post(b"", length=None),
        "body shorter than Content-Length": http_post(b'{"instances": [', length="1000"),
        "body over the size limit": http_post(b"", length=str(server.max_message_bytes + 1)),
        "empty instances": http_post(b'{"instances": []}'),
        "20000x20000 PNG": http_post(b64_instances(good, huge)),
        "257 images": http_post(b64_instances(*[good] * 257)),
        "not an image": http_post(b64_instances(b"not an image")),
    }
    for case, raw in rest_cases.items():
        status, message = http_exchange(server.rest, raw)
        clear = 400 <= status < 500 and bool(message) and "\n" not in message
        outcomes.append(Outcome(f"REST {case}", clear, f"{status}: {message[:110]}"))
    return outcomes


# -- swaps -----------------------------------------------------------------------------------------------------------


def version_states(model_stub) -> Dict[int, Tuple[str, str]]:
    """Version -> (state name, error message), from GetModelStatus."""
    from tensorflow_serving.apis import get_model_status_pb2

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "spanet"
    names = {v: k for k, v in get_model_status_pb2.ModelVersionStatus.State.items()}
    response = model_stub.GetModelStatus(request, timeout=30)
    return {s.version: (names[s.state], s.status.error_message) for s in response.model_version_status}


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `condition` until true; exit naming `what` past the timeout."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def swaps(server: ServerProcess, base: str, first: int, images: List[bytes]) -> Dict[str, object]:
    """8 threads of good requests while versions are copied in (two of them partial first); failed
    requests and versions seen."""
    import grpc
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    failures: List[str] = []
    answered: Dict[int, int] = {}
    lock, stop = threading.Lock(), threading.Event()
    sent = [0]

    def client(k: int) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            i = 0
            while not stop.is_set():
                request = predict_request([images[(k + i) % len(images)], images[(k + i + 1) % len(images)]])
                i += 1
                try:
                    version = stub.Predict(request, timeout=60).model_spec.version.value
                    with lock:
                        answered[version] = answered.get(version, 0) + 1
                        sent[0] += 1
                except grpc.RpcError as exc:
                    with lock:
                        failures.append(f"{exc.code().name}: {exc.details()}")
                        sent[0] += 1

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(CLIENT_THREADS)]
    for t in threads:
        t.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc}")
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    source = os.path.join(base, str(first))
    data_name = [n for n in os.listdir(os.path.join(source, "variables")) if n.startswith("variables.data")][0]
    full_data = open(os.path.join(source, "variables", data_name), "rb").read()
    plan = [
        ("whole copy, then rename", None),
        ("partial copy: variables cut short, completed later", "truncate"),
        ("partial copy: variables missing, completed later", "no-variables"),
        ("whole copy, then rename", None),
    ]
    log = []

    def served(version: int) -> Callable[[], bool]:
        return lambda: answered.get(version, 0) >= 20

    wait_for(served(first), 60, f"answers from version {first}")
    for n, (how, fault) in enumerate(plan, start=1):
        version = first + n
        target = os.path.join(base, str(version))
        if fault is None:
            staging = os.path.join(base, f".staging-{version}")
            shutil.copytree(source, staging)
            os.rename(staging, target)
        else:
            if fault == "truncate":  # the whole data file is never there before the copy completes
                shutil.copytree(source, target, ignore=shutil.ignore_patterns(data_name))
                with open(os.path.join(target, "variables", data_name), "wb") as fh:
                    fh.write(full_data[: len(full_data) // 2])
            else:
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("variables"))
            wait_for(
                lambda: version_states(models).get(version, ("", ""))[0] == "END",
                60,
                f"the server to try (and fail on) the partial version {version}",
            )
            error = version_states(models)[version][1]
            time.sleep(5 * POLL_S)  # a few more scans with the partial copy in place
            if fault == "truncate":
                with open(os.path.join(target, "variables", data_name), "wb") as fh:
                    fh.write(full_data)
            else:
                shutil.copytree(os.path.join(source, "variables"), os.path.join(target, "variables"))
            how = f"{how} (first load failed: {error[:70]})"
        wait_for(served(version), 120, f"answers from version {version}")
        log.append(f"version {version}: {how}")
    stop.set()
    for t in threads:
        t.join(timeout=120)
    channel.close()
    return {
        "log": log,
        "failures": failures,
        "answered": dict(sorted(answered.items())),
        "sent": sent[0],
        "last": first + len(plan),
        "states": version_states_safe(server),
    }


def version_states_safe(server: ServerProcess) -> Dict[int, Tuple[str, str]]:
    """The version states over a channel of its own."""
    import grpc
    from tensorflow_serving.apis import model_service_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{server.grpc}") as channel:
        return version_states(model_service_pb2_grpc.ModelServiceStub(channel))


# -- memory ----------------------------------------------------------------------------------------------------------


def concurrent_load(server: ServerProcess, request, rounds: int) -> Dict[str, object]:
    """CLIENT_THREADS threads send `request` `rounds` times each at once; the server's peak RSS and the answers."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    codes: Dict[str, int] = {}
    lock = threading.Lock()
    gate = threading.Barrier(CLIENT_THREADS)
    options = [("grpc.max_send_message_length", 256 * MIB), ("grpc.max_receive_message_length", 256 * MIB)]

    def client() -> None:
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc}", options=options) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            gate.wait()
            for _ in range(rounds):
                try:
                    stub.Predict(request, timeout=300)
                    code = "OK"
                except grpc.RpcError as exc:
                    code = exc.code().name
                with lock:
                    codes[code] = codes.get(code, 0) + 1

    before = server.status()["VmRSS"]
    reset = server.reset_peak()
    threads = [threading.Thread(target=client) for _ in range(CLIENT_THREADS)]
    with RssSampler(server) as sampler:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    after = server.status()
    peak = max(after["VmHWM"] if reset else 0, sampler.peak)
    return {
        "before": before,
        "peak": peak,
        "after": after["VmRSS"],
        "codes": codes,
        "hwm_reset": reset,
        "request_bytes": request.ByteSize(),
    }


def main(argv=None) -> int:
    """Run the three measurements and print them; exit 1 if a bad input was unclear, a request failed
    or memory went over."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model-base-path", default=None, help="a TF Serving base directory to copy (default: export a tiny model)"
    )
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args.serve)

    import grpc
    import numpy as np
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from spanet.data.imageio import encode_png
    from spanet.serving.config import DECODE_BYTES_PER_PIXEL, RequestLimits
    from spanet.serving.model_manager import list_versions

    helpers = _load_test_helpers()
    work = tempfile.mkdtemp(prefix="bench_serving_faults_")
    base = os.path.join(work, "spanet")
    started = time.monotonic()
    if args.model_base_path:
        shutil.copytree(args.model_base_path, base)
        first = list_versions(base)[-1]
        model = f"copy of {args.model_base_path}"
    else:
        first = 1
        export_tiny_model(os.path.join(base, str(first)))
        model = "tiny export (components.transform.decode_and_resize + a linear layer)"
    rng = np.random.default_rng(0)
    images = [encode_png(np.where(rng.random((n, n)) < 0.1, 255, 128).astype(np.uint8)) for n in range(26, 64, 3)]
    huge = helpers.encode_blank_png(HUGE_SIDE, HUGE_SIDE)
    limits = RequestLimits()
    limit_side = int(limits.max_image_pixels**0.5)
    at_limit = helpers.encode_blank_png(limit_side, limit_side)

    server = ServerProcess(base, os.path.join(work, "server.log"))
    try:
        import tensorflow as tf

        server.signatures = set(tf.saved_model.load(os.path.join(base, str(first))).signatures)
        channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for i in range(5):  # warm: trace, first requests
            stub.Predict(predict_request(images[i : i + 2]), timeout=120)
        baseline = server.status()["VmRSS"]
        print(
            f"model: {model}; server pid {server.proc.pid}, gRPC {server.grpc}, REST {server.rest}; "
            f"limits {server.limits}",
            flush=True,
        )

        outcomes = bad_inputs(server, stub, images[0], huge, at_limit)
        clear = [o for o in outcomes if o.clear]
        print(f"\n1. bad inputs tried: {len(outcomes)}; clear errors: {len(clear)}", flush=True)
        for o in outcomes:
            print(f"   {'clear  ' if o.clear else 'UNCLEAR'}  {o.case:<36} {o.answer}")

        swap = swaps(server, base, first, images)
        print(
            f"\n2. swaps: {CLIENT_THREADS} client threads, {swap['sent']} requests; failed requests during swaps: "
            f"{len(swap['failures'])}",
            flush=True,
        )
        for line in swap["log"]:
            print(f"   {line}")
        print(f"   answers per version: {swap['answered']}")
        print(f"   final states: {swap['states']}")
        for failure in swap["failures"][:5]:
            print(f"   failure: {failure}")

        oversized = concurrent_load(server, predict_request([images[0], huge]), OVERSIZED_ROUNDS)
        in_flight = CLIENT_THREADS * oversized["request_bytes"] * 4
        bound = limits.decode_bytes_bound() + in_flight
        rss_base = oversized["before"]
        print(
            f"\n3. memory (server VmRSS baseline after warm-up {baseline / MIB:.0f} MiB; "
            f"before this load {rss_base / MIB:.0f} MiB)"
        )
        print(
            f"   bound = baseline + max_concurrent_predictions {limits.max_concurrent_predictions} x max_batch_pixels "
            f"{limits.max_batch_pixels} x {DECODE_BYTES_PER_PIXEL} B ({limits.decode_bytes_bound() / MIB:.0f} MiB) "
            f"+ {CLIENT_THREADS} requests in flight x 4 copies ({in_flight / MIB:.1f} MiB) "
            f"= baseline + {bound / MIB:.0f} MiB"
        )
        print(
            f"   {CLIENT_THREADS} threads x {OVERSIZED_ROUNDS} requests of "
            f"[a good PNG, the {len(huge) // 1024} KB PNG declaring "
            f"{HUGE_SIDE}x{HUGE_SIDE}]: answers {oversized['codes']}; peak RSS {oversized['peak'] / MIB:.0f} MiB = "
            f"baseline + {(oversized['peak'] - rss_base) / MIB:.1f} MiB "
            f"({'within' if oversized['peak'] - rss_base <= bound else 'OVER'} the bound); "
            f"after {oversized['after'] / MIB:.0f} MiB"
            f"{'' if oversized['hwm_reset'] else ' (VmHWM could not be reset: sampled VmRSS)'}",
            flush=True,
        )

        at_limit_load = concurrent_load(server, predict_request([at_limit, at_limit]), 1)
        rss_base = at_limit_load["before"]
        bound = limits.decode_bytes_bound() + CLIENT_THREADS * at_limit_load["request_bytes"] * 4
        print(
            f"   {CLIENT_THREADS} threads x 1 request of 2 x {limit_side}x{limit_side} PNGs "
            "(at max_batch_pixels, decoded): "
            f"answers {at_limit_load['codes']}; peak RSS {at_limit_load['peak'] / MIB:.0f} MiB = baseline + "
            f"{(at_limit_load['peak'] - rss_base) / MIB:.1f} MiB "
            f"({'within' if at_limit_load['peak'] - rss_base <= bound else 'OVER'} the bound of "
            f"baseline + {bound / MIB:.0f} MiB); "
            f"after {at_limit_load['after'] / MIB:.0f} MiB",
            flush=True,
        )
        channel.close()
    finally:
        server.stop()
    with open(os.path.join(work, "server.log")) as fh:
        log = fh.read()
    print(
        f"\nserver log: {log.count('Traceback')} tracebacks, {log.count(' ERROR ')} ERROR lines "
        f"(the partial copies' first failed loads); {time.monotonic() - started:.0f} s in all"
    )
    ok = (
        len(clear) == len(outcomes)
        and not swap["failures"]
        and oversized["peak"] - oversized["before"]
        <= (limits.decode_bytes_bound() + CLIENT_THREADS * oversized["request_bytes"] * 4)
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
