"""The REST port of the local server: TF Serving's ``/v1/models/...`` routes over plain HTTP.

- ``GET /v1/models/<name>[/versions/<v>]``: the model status (the readiness probe production uses).
- ``GET /v1/models/<name>[/versions/<v>]/metadata``: the signature map.
- ``POST /v1/models/<name>[/versions/<v>]:predict``: ``{"instances": [...]}`` (row format) or
  ``{"inputs": ...}`` (columnar); binary strings as ``{"b64": "..."}``, as in TF Serving.

It reuses the gRPC path's handlers (same checks, same errors), mapped to HTTP codes with a JSON
``{"error": message}`` body.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Optional, Tuple

import grpc
import numpy as np
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

from spanet.serving import inference
from spanet.serving.config import DEFAULT_SIGNATURE
from spanet.serving.errors import ServingError, invalid_argument
from spanet.serving.model_manager import ModelManager
from spanet.serving.tensors import from_tensor_proto, to_tensor_proto

log = logging.getLogger("spanet.serving")

_ROUTE = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?(?P<rest>/metadata|:predict)?$")
_HTTP_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.FAILED_PRECONDITION: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.NOT_FOUND: HTTPStatus.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    grpc.StatusCode.UNIMPLEMENTED: HTTPStatus.NOT_IMPLEMENTED,
    grpc.StatusCode.UNAVAILABLE: HTTPStatus.SERVICE_UNAVAILABLE,
}


def _to_json_value(value: np.ndarray) -> Any:
    if value.dtype == object:
        return np.vectorize(lambda b: b.decode("utf-8", "replace") if isinstance(b, bytes) else b, otypes=[object])(value).tolist()
    return value.tolist()


def _from_json_value(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_from_json_value(v) for v in value]
    if isinstance(value, str):
        return value.encode("utf-8")
    return value


def _json_inputs(body: Dict[str, Any], input_names) -> Tuple[Dict[str, Any], bool]:
    """The per-input values of a REST predict body, and whether it was row format."""
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, list):
            raise invalid_argument("'instances' must be a list")
        if rows and all(isinstance(r, dict) and set(r) != {"b64"} for r in rows):
            return {k: [_from_json_value(r.get(k)) for r in rows] for k in rows[0]}, True
        if len(input_names) != 1:
            raise invalid_argument(f"instances must be objects naming the inputs {sorted(input_names)}")
        return {next(iter(input_names)): [_from_json_value(r) for r in rows]}, True
    if "inputs" in body:
        inputs = body["inputs"]
        if isinstance(inputs, dict):
            return {k: _from_json_value(v) for k, v in inputs.items()}, False
        if len(input_names) != 1:
            raise invalid_argument(f"inputs must be an object naming the inputs {sorted(input_names)}")
        return {next(iter(input_names)): _from_json_value(inputs)}, False
    raise invalid_argument("JSON body must hold 'instances' or 'inputs'")


def rest_predict(manager: ModelManager, name: str, version: Optional[int], body: Dict[str, Any]) -> Dict[str, Any]:
    """A REST predict body -> the PredictRequest the gRPC path runs -> TF Serving's JSON answer."""
    servable = manager.get(name, version)
    signature_name = body.get("signature_name") or DEFAULT_SIGNATURE
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
        except (TypeError, ValueError) as exc:
            raise invalid_argument(f"input {key}: {exc}") from None
        request.inputs[key].CopyFrom(proto)
    response = inference.predict(manager, request)
    outputs = {k: _to_json_value(from_tensor_proto(v)) for k, v in response.outputs.items()}
    if not rows:
        return {"outputs": outputs if len(outputs) > 1 else next(iter(outputs.values()))}
    if len(outputs) == 1:
        return {"predictions": next(iter(outputs.values()))}
    count = len(next(iter(outputs.values())))
    return {"predictions": [{k: v[i] for k, v in outputs.items()} for i in range(count)]}


def _handler(manager: ModelManager, max_body_bytes: int):
    class Handler(BaseHTTPRequestHandler):
        server_version = "spanet-local-serving"

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet: one line per request is too much
            log.debug("rest: " + fmt, *args)

        def _send(self, status: int, payload: Dict[str, Any]) -> None:
            data = json.dumps(payload, indent=1).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self):
            match = _ROUTE.match(self.path.split("?")[0])
            if not match:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {self.command} {self.path}")
            version = int(match["version"]) if match["version"] else None
            return match["name"], version, match["rest"] or ""

        def _answer(self, work) -> None:
            try:
                self._send(HTTPStatus.OK, work())
            except ServingError as exc:
                self._send(_HTTP_CODES.get(exc.code, HTTPStatus.INTERNAL_SERVER_ERROR), {"error": exc.message})
            except Exception as exc:  # never let one request take the port down
                log.exception("rest: %s %s failed", self.command, self.path)
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(exc).__name__}: {exc}"})

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            def work():
                name, version, rest = self._route()
                if rest == ":predict":
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "predict needs POST")
                if rest == "/metadata":
                    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=[inference.SIGNATURE_DEF_FIELD])
                    request.model_spec.name = name
                    if version is not None:
                        request.model_spec.version.value = version
                    response = inference.model_metadata(manager, request)
                    signature_map = get_model_metadata_pb2.SignatureDefMap()
                    response.metadata[inference.SIGNATURE_DEF_FIELD].Unpack(signature_map)
                    return {
                        "model_spec": {"name": name, "signature_name": "", "version": str(response.model_spec.version.value)},
                        "metadata": {"signature_def": json_format.MessageToDict(signature_map, preserving_proto_field_name=True)},
                    }
                request = get_model_status_pb2.GetModelStatusRequest()
                request.model_spec.name = name
                if version is not None:
                    request.model_spec.version.value = version
                response = inference.model_status(manager, request)
                return json_format.MessageToDict(response, preserving_proto_field_name=True, including_default_value_fields=True)
            self._answer(work)

        def do_POST(self) -> None:  # noqa: N802
            def work():
                name, version, rest = self._route()
                if rest != ":predict":
                    raise ServingError(grpc.StatusCode.NOT_FOUND, f"Malformed request: POST {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                if length > max_body_bytes:
                    self.close_connection = True
                    raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"request of {length} bytes is over the {max_body_bytes}-byte limit")
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError as exc:
                    raise invalid_argument(f"JSON Parse error: {exc}") from None
                if not isinstance(body, dict):
                    raise invalid_argument("JSON body must be an object")
                return rest_predict(manager, name, version, body)
            self._answer(work)

    return Handler


class RestServer:
    """TF Serving's REST routes on `host:port` (0 picks a free port), served from a daemon thread."""

    def __init__(self, manager: ModelManager, host: str, port: int, max_body_bytes: int):
        self._httpd = ThreadingHTTPServer((host, port), _handler(manager, max_body_bytes))
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="rest", daemon=True)

    def start(self) -> "RestServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
