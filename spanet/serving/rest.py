"""The REST port of the local server: TF Serving's ``/v1/models/...`` routes over plain HTTP.

- ``GET /v1/models/<name>[/versions/<v>]``: the model status (the readiness probe production uses).
- ``GET /v1/models/<name>[/versions/<v>]/metadata``: the signature map.
- ``POST /v1/models/<name>[/versions/<v>]:predict``: ``{"instances": [...]}`` (row format) or
  ``{"inputs": ...}`` (columnar); binary strings as ``{"b64": "..."}``, as in TF Serving.

It reuses the gRPC path's handlers (same checks, same limits, same errors), mapped to HTTP codes
with a JSON ``{"error": message}`` body. What the client sends is bounded: the body by
``max_message_bytes`` (413, not read), every read by ``rest_read_timeout_s`` (408), open
connections by ``max_rest_connections`` (503); a body that is not JSON, is nested too deeply,
holds bad base64 or comes with a bad Content-Length is a 400. A client that hangs up is logged
on one debug line, never with a traceback.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Optional, Tuple

import grpc
import numpy as np
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

from spanet.serving import inference
from spanet.serving.config import DEFAULT_SIGNATURE, ServerConfig
from spanet.serving.errors import ServingError, invalid_argument
from spanet.serving.limits import RequestGuard
from spanet.serving.model_manager import ModelManager
from spanet.serving.request_log import RequestLogger
from spanet.serving.tensors import from_tensor_proto, to_tensor_proto

log = logging.getLogger("spanet.serving")

_ROUTE = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?(?P<rest>/metadata|:predict)?$")
_HTTP_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.FAILED_PRECONDITION: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.NOT_FOUND: HTTPStatus.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED: HTTPStatus.TOO_MANY_REQUESTS,  # server busy; a body over the limit is a 413
    grpc.StatusCode.UNIMPLEMENTED: HTTPStatus.NOT_IMPLEMENTED,
    grpc.StatusCode.UNAVAILABLE: HTTPStatus.SERVICE_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: HTTPStatus.REQUEST_TIMEOUT,
}
#: Nesting of JSON values below ``instances`` / ``inputs``: a tensor has at most 32 dimensions (numpy's limit).
MAX_JSON_DEPTH = 32
_CONTENT_LENGTH = re.compile(r"^[0-9]{1,19}$")
#: A client that went away while being answered: one debug line, no traceback.
_HUNG_UP = (ConnectionError, TimeoutError)


class HttpError(ServingError):
    """A failure of the HTTP exchange itself (length, size, timeout), answered with its own HTTP status."""

    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(
            grpc.StatusCode.RESOURCE_EXHAUSTED
            if status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
            else grpc.StatusCode.INVALID_ARGUMENT,
            message,
        )
        self.status = status


def _to_json_value(value: np.ndarray) -> Any:
    if value.dtype == object:
        return np.vectorize(lambda b: b.decode("utf-8", "replace") if isinstance(b, bytes) else b, otypes=[object])(
            value
        ).tolist()
    return value.tolist()


def _b64(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise invalid_argument(f"{where}.b64 must be a base64 string, not {type(value).__name__}")
    text = "".join(value.split())
    try:
        if "-" in text or "_" in text:
            return base64.b64decode(text, altchars=b"-_", validate=True)
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise invalid_argument(f"{where}.b64 is not valid base64 ({exc})") from None


def _from_json_value(value: Any, where: str, depth: int = 0) -> Any:
    if depth > MAX_JSON_DEPTH:
        raise invalid_argument(f"{where[:40]}... is nested more than {MAX_JSON_DEPTH} levels deep")
    if isinstance(value, dict):
        if set(value) == {"b64"}:
            return _b64(value["b64"], where)
        raise invalid_argument(f'{where} is an object other than {{"b64": ...}}')
    if isinstance(value, list):
        return [_from_json_value(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, str):
        return value.encode("utf-8")
    return value


def _json_inputs(body: Dict[str, Any], input_names) -> Tuple[Dict[str, Any], bool]:
    """The per-input values of a REST predict body, and whether it was row format."""
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, list):
            raise invalid_argument("'instances' must be a list")
        if not rows:
            raise invalid_argument("'instances' is an empty list: send at least one instance")
        if all(isinstance(r, dict) and set(r) != {"b64"} for r in rows):
            names = list(rows[0])
            for i, row in enumerate(rows):
                if set(row) != set(names):
                    raise invalid_argument(
                        f"instances[{i}] names the inputs {sorted(row)}, instances[0] {sorted(names)}"
                    )
            return {
                k: [_from_json_value(r.get(k), f"instances[{i}].{k}", 1) for i, r in enumerate(rows)] for k in names
            }, True
        if len(input_names) != 1:
            raise invalid_argument(f"instances must be objects naming the inputs {sorted(input_names)}")
        return {next(iter(input_names)): [_from_json_value(r, f"instances[{i}]", 1) for i, r in enumerate(rows)]}, True
    if "inputs" in body:
        inputs = body["inputs"]
        if isinstance(inputs, dict) and set(inputs) != {"b64"}:
            return {k: _from_json_value(v, f"inputs.{k}") for k, v in inputs.items()}, False
        if len(input_names) != 1:
            raise invalid_argument(f"inputs must be an object naming the inputs {sorted(input_names)}")
        return {next(iter(input_names)): _from_json_value(inputs, "inputs")}, False
    raise invalid_argument("JSON body must hold 'instances' or 'inputs'")


def parse_json_body(data: bytes) -> Dict[str, Any]:
    """A predict body as a JSON object; INVALID_ARGUMENT (one line) for anything else."""
    try:
        body = json.loads(data or b"{}")
    except UnicodeDecodeError:
        raise invalid_argument(
            "request body is not JSON (not UTF-8 text: a raw image? "
            'send {"instances": [{"b64": "<base64 of the image>"}]})'
        ) from None
    except json.JSONDecodeError as exc:
        raise invalid_argument(f"JSON Parse error: {exc}") from None
    except RecursionError:
        raise invalid_argument("request body is JSON nested too deeply") from None
    if not isinstance(body, dict):
        raise invalid_argument("JSON body must be an object")
    return body


def rest_predict(
    manager: ModelManager,
    guard: RequestGuard,
    name: str,
    version: Optional[int],
    body: Dict[str, Any],
    request_log: Optional[RequestLogger] = None,
) -> Dict[str, Any]:
    """A REST predict body -> the PredictRequest the gRPC path runs (same checks and limits) -> TF
    Serving's JSON answer."""
    servable = manager.get(name, version)
    signature_name = body.get("signature_name") or DEFAULT_SIGNATURE
    if not isinstance(signature_name, str):
        raise invalid_argument(f"signature_name must be a string, not {type(signature_name).__name__}")
    inference.find_signature(servable, signature_name)
    specs = servable.input_specs(signature_name)
    values, rows = _json_inputs(body, specs)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = version
    for key, value in values.items():
        spec = specs.get(key)
        try:
            proto = to_tensor_proto(value, dtype=spec.dtype if spec is not None else None)
        except (TypeError, ValueError, OverflowError) as exc:
            raise invalid_argument(f"input {key}: {' '.join(str(exc).split())}") from None
        request.inputs[key].CopyFrom(proto)
    del values
    response = inference.predict(manager, request, guard, request_log=request_log)
    outputs = {k: _to_json_value(from_tensor_proto(v)) for k, v in response.outputs.items()}
    if not rows:
        return {"outputs": outputs if len(outputs) > 1 else next(iter(outputs.values()))}
    if len(outputs) == 1:
        return {"predictions": next(iter(outputs.values()))}
    count = len(next(iter(outputs.values())))
    return {"predictions": [{k: v[i] for k, v in outputs.items()} for i in range(count)]}


def _handler(
    manager: ModelManager,
    guard: RequestGuard,
    max_body_bytes: int,
    read_timeout_s: float,
    request_log: Optional[RequestLogger] = None,
):
    class Handler(BaseHTTPRequestHandler):
        server_version = "spanet-local-serving"
        #: Applied to the socket by StreamRequestHandler.setup: every read and write of the exchange.
        timeout = read_timeout_s

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet: one line per request is too much
            log.debug("rest: " + fmt, *args)

        def handle(self) -> None:
            try:
                super().handle()
            except _HUNG_UP as exc:
                self.close_connection = True
                log.debug("rest: client %s went away (%s)", self.client_address[0], type(exc).__name__)

        def _send(self, status: int, payload: Dict[str, Any]) -> None:
            data = json.dumps(payload, indent=1).encode("utf-8")
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
            except _HUNG_UP as exc:
                self.close_connection = True
                log.debug(
                    "rest: client %s went away before the answer to %s %s (%s)",
                    self.client_address[0],
                    self.command,
                    self.path,
                    type(exc).__name__,
                )

        def _route(self):
            match = _ROUTE.match(self.path.split("?")[0])
            if not match:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {self.command} {self.path}")
            version = int(match["version"]) if match["version"] else None
            return match["name"], version, match["rest"] or ""

        def _answer(self, work) -> None:
            try:
                payload = work()
            except HttpError as exc:
                self._send(exc.status, {"error": exc.message})
            except ServingError as exc:
                self._send(_HTTP_CODES.get(exc.code, HTTPStatus.INTERNAL_SERVER_ERROR), {"error": exc.message})
            except _HUNG_UP as exc:
                self.close_connection = True
                log.debug(
                    "rest: client %s went away during %s %s (%s)",
                    self.client_address[0],
                    self.command,
                    self.path,
                    type(exc).__name__,
                )
            except Exception as exc:  # never let one request take the port down
                log.exception("rest: %s %s failed", self.command, self.path)
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(exc).__name__}: {exc}"})
            else:
                self._send(HTTPStatus.OK, payload)

        def _content_length(self) -> int:
            if self.headers.get("Transfer-Encoding"):
                self.close_connection = True
                raise HttpError(
                    HTTPStatus.LENGTH_REQUIRED, "Transfer-Encoding bodies are not supported: send a Content-Length"
                )
            values = self.headers.get_all("Content-Length") or []
            if not values:
                self.close_connection = True
                raise HttpError(HTTPStatus.LENGTH_REQUIRED, "a POST needs a Content-Length header")
            text = values[0].strip()
            if len(set(v.strip() for v in values)) != 1 or not _CONTENT_LENGTH.match(text):
                self.close_connection = True
                raise HttpError(
                    HTTPStatus.BAD_REQUEST, f"Content-Length {', '.join(values)!r} is not one non-negative integer"
                )
            return int(text)

        def _read_body(self, length: int) -> bytearray:
            """Exactly `length` bytes within the read timeout; 400 if the client ends early, 408 if it stalls."""
            body = bytearray(length)
            view, got = memoryview(body), 0
            deadline = time.monotonic() + read_timeout_s
            try:
                while got < length:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise socket.timeout()
                    self.connection.settimeout(remaining)
                    n = self.rfile.readinto1(view[got:])
                    if not n:
                        self.close_connection = True
                        raise HttpError(
                            HTTPStatus.BAD_REQUEST,
                            f"request body ended after {got} of the {length} bytes its Content-Length declares",
                        )
                    got += n
            except socket.timeout:
                self.close_connection = True
                raise HttpError(
                    HTTPStatus.REQUEST_TIMEOUT,
                    f"request body: got {got} of the {length} bytes its Content-Length declares "
                    f"within {read_timeout_s:g} s",
                ) from None
            finally:
                view.release()
                self.connection.settimeout(read_timeout_s)
            return body

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            def work():
                name, version, rest = self._route()
                if rest == ":predict":
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "predict needs POST")
                if rest == "/metadata":
                    request = get_model_metadata_pb2.GetModelMetadataRequest(
                        metadata_field=[inference.SIGNATURE_DEF_FIELD]
                    )
                    request.model_spec.name = name
                    if version is not None:
                        request.model_spec.version.value = version
                    response = inference.model_metadata(manager, request)
                    signature_map = get_model_metadata_pb2.SignatureDefMap()
                    response.metadata[inference.SIGNATURE_DEF_FIELD].Unpack(signature_map)
                    return {
                        "model_spec": {
                            "name": name,
                            "signature_name": "",
                            "version": str(response.model_spec.version.value),
                        },
                        "metadata": {
                            "signature_def": json_format.MessageToDict(signature_map, preserving_proto_field_name=True)
                        },
                    }
                request = get_model_status_pb2.GetModelStatusRequest()
                request.model_spec.name = name
                if version is not None:
                    request.model_spec.version.value = version
                response = inference.model_status(manager, request)
                return json_format.MessageToDict(
                    response, preserving_proto_field_name=True, including_default_value_fields=True
                )

            self._answer(work)

        def do_POST(self) -> None:  # noqa: N802
            def work():
                try:
                    name, version, rest = self._route()
                    if rest != ":predict":
                        raise ServingError(grpc.StatusCode.NOT_FOUND, f"Malformed request: POST {self.path}")
                except ServingError:
                    self.close_connection = True  # the body is not read
                    raise
                length = self._content_length()
                if length > max_body_bytes:
                    self.close_connection = True  # the body is not read
                    raise HttpError(
                        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        f"request of {length} bytes is over the {max_body_bytes}-byte limit (max_message_bytes)",
                    )
                body = parse_json_body(self._read_body(length))
                return rest_predict(manager, guard, name, version, body, request_log)

            self._answer(work)

    return Handler


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with a bound on open connections and one-line logs for clients that hang up."""

    daemon_threads = True

    def __init__(self, address, handler, max_connections: int):
        super().__init__(address, handler)
        self.max_connections = max_connections
        self._connections = threading.BoundedSemaphore(max_connections)

    def process_request(self, request, client_address) -> None:
        if not self._connections.acquire(blocking=False):
            message = json.dumps(
                {"error": f"server busy: {self.max_connections} REST connections are open (max_rest_connections)"}
            ).encode()
            try:
                request.settimeout(1.0)
                request.sendall(
                    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(message), message)
                )
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._connections.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, _HUNG_UP):
            log.debug(
                "rest: client %s went away (%s)", client_address[0] if client_address else "?", type(exc).__name__
            )
        else:
            log.exception("rest: connection from %s failed", client_address[0] if client_address else "?")


class RestServer:
    """TF Serving's REST routes on `host:port` (0 picks a free port), served from a daemon thread."""

    def __init__(
        self,
        manager: ModelManager,
        host: str,
        port: int,
        max_body_bytes: int,
        guard: Optional[RequestGuard] = None,
        read_timeout_s: float = ServerConfig.rest_read_timeout_s,
        max_connections: int = ServerConfig.max_rest_connections,
        request_log: Optional[RequestLogger] = None,
    ):
        if guard is None:
            from spanet.serving.config import RequestLimits

            guard = RequestGuard(RequestLimits())
        self._httpd = _HTTPServer(
            (host, port), _handler(manager, guard, max_body_bytes, read_timeout_s, request_log), max_connections
        )
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="rest", daemon=True)

    def start(self) -> "RestServer":
        """Serve from the daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the port."""
        self._httpd.shutdown()
        self._httpd.server_close()
