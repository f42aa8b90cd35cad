"""The TF Serving gRPC client of the exported model: the same code against TF Serving or the local server.

It uses only ``tensorflow-serving-api``'s generated stubs. The input name of the signature is
discovered with GetModelMetadata (the one string input), not hard-coded; images go as raw PNG/JPEG
bytes (wafer-map arrays are rendered with the project's grey-level convention and PNG-encoded
here), in batches of ``ClientConfig.batch_size``. Every call has a deadline, message-size limits
are raised for image batches, UNAVAILABLE is retried with exponential backoff, TLS is optional.

Per input it returns a `Prediction`: class name, probabilities by class name, defect flag and score.
The model's class order is not in the signature metadata: it comes from ``ClientConfig.class_names``,
else a zero-input ``class_names`` signature if the model has one, else it is learned from the
(class_id, class_name) pairs of the answers (classes not yet seen are named ``class_<i>``); a
multi-label model's names are learned from its ``patterns_present`` rows, whose ``+``-joined class
name lists the present patterns in column order.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import grpc
import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from spanet.serving.config import ClientConfig
from spanet.serving.contract import (
    CLASS_ID,
    CLASS_NAME,
    CLASS_NAMES_SIGNATURE,
    DEFECT_SCORE,
    DEFECTIVE,
    FAMILIARITY,
    OPTIONAL_OUTPUTS,
    PATTERNS_PRESENT,
    PROBABILITIES,
    REQUIRED_OUTPUTS,
    UNKNOWN,
)
from spanet.serving.tensors import from_tensor_proto, to_tensor_proto

#: Joins the patterns of a multi-label class name (spanet.data.classes.MIXED_LABEL_SEPARATOR).
_PATTERN_SEPARATOR = "+"
_STATE_NAMES = {v: k for k, v in get_model_status_pb2.ModelVersionStatus.State.items()}


class ServingUnavailableError(ConnectionError):
    """The server could not be reached (or had no ready version) within the retries / wait."""


class ServingRequestError(RuntimeError):
    """The server answered with an error status (e.g. INVALID_ARGUMENT for an undecodable image)."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one input."""

    class_name: str
    #: Class name -> probability, in the model's class order.
    probabilities: Dict[str, float]
    defective: bool
    defect_score: float
    model_version: int
    #: True when the input is unlike every class the model knows (class_name is then "unknown").
    unknown: bool = False
    #: The largest cosine similarity to a class (None for models without it).
    familiarity: Optional[float] = None
    #: Multi-label models: the patterns present (empty for a normal wafer); None for single-label models.
    patterns: Optional[Tuple[str, ...]] = None

    @property
    def confidence(self) -> Optional[float]:
        """The probability of the predicted class (multi-label: of the least sure pattern present, or
        that none is); None for an unknown input (no class was predicted)."""
        if self.unknown:
            return None
        if self.patterns is not None:
            if not self.patterns:
                return 1.0 - max(self.probabilities.values(), default=0.0)
            known = [self.probabilities[p] for p in self.patterns if p in self.probabilities]
            return min(known) if len(known) == len(self.patterns) else None
        return self.probabilities.get(self.class_name)


def predictions_from_outputs(out: Dict[str, np.ndarray], names: Sequence[str], version: int) -> List[Prediction]:
    """One :class:`Prediction` per row of a signature's outputs (numpy, class names as bytes), the
    probabilities' columns named by ``names``: the one reading of the model's answers, for the gRPC
    client and for in-process use (``spanet.serving.local``)."""
    return [
        Prediction(
            class_name=out[CLASS_NAME][i].decode("utf-8", "replace"),
            probabilities={names[j]: float(out[PROBABILITIES][i, j]) for j in range(len(names))},
            defective=bool(out[DEFECTIVE][i]),
            defect_score=float(out[DEFECT_SCORE][i]),
            model_version=version,
            unknown=bool(out[UNKNOWN][i]) if UNKNOWN in out else False,
            familiarity=float(out[FAMILIARITY][i]) if FAMILIARITY in out else None,
            patterns=(
                tuple(names[j] for j in np.flatnonzero(out[PATTERNS_PRESENT][i] > 0.5))
                if PATTERNS_PRESENT in out
                else None
            ),
        )
        for i in range(out[PROBABILITIES].shape[0])
    ]


@dataclass(frozen=True)
class SignatureInfo:
    """What GetModelMetadata says about one signature: input / output name -> (dtype name, shape; -1 unknown)."""

    name: str
    method_name: str
    inputs: Dict[str, Tuple[str, Tuple[int, ...]]]
    outputs: Dict[str, Tuple[str, Tuple[int, ...]]]
    model_version: int


def _tensor_info(infos) -> Dict[str, Tuple[str, Tuple[int, ...]]]:
    return {
        name: (types_pb2.DataType.Name(info.dtype), tuple(d.size for d in info.tensor_shape.dim))
        for name, info in infos.items()
    }


def encode_inputs(items: Iterable[Union[bytes, np.ndarray]]) -> List[bytes]:
    """Raw bytes as they are; uint8 HxW / HxWx3 arrays PNG-encoded (ValueError names the bad item)."""
    from spanet.data.imageio import encode_png

    out = []
    for i, item in enumerate(items):
        if isinstance(item, (bytes, bytearray)):
            out.append(bytes(item))
        else:
            try:
                out.append(encode_png(np.asarray(item)))
            except ValueError as exc:
                raise ValueError(f"input {i}: {exc}") from None
    return out


def wafer_maps_to_png(die_maps: Iterable[np.ndarray]) -> List[bytes]:
    """Die maps (0 off-wafer, 1 pass, 2 fail) -> grey PNGs in the project's convention (0/128/255)."""
    from spanet.data.convention import die_map_to_image
    from spanet.data.imageio import encode_png

    out = []
    for i, die_map in enumerate(die_maps):
        try:
            out.append(encode_png(die_map_to_image(die_map)))
        except ValueError as exc:
            raise ValueError(f"wafer map {i}: {exc}") from None
    return out


class ServingClient:
    """A client of one model on TF Serving (or the local server). Thread-safe; close() when done."""

    def __init__(self, config: ClientConfig):
        self.config = config
        limit = config.max_message_bytes
        options = [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]
        if config.tls is not None:
            root, key, chain = config.tls.read()
            credentials = grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=chain)
            if config.tls.server_name_override:
                options.append(("grpc.ssl_target_name_override", config.tls.server_name_override))
            self._channel = grpc.secure_channel(config.target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(config.target, options=options)
        self._prediction = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self._lock = threading.Lock()
        self._signature: Optional[SignatureInfo] = None
        self._class_names: Dict[int, str] = dict(enumerate(config.class_names or ()))
        self._class_names_asked = bool(config.class_names)

    # -- plumbing -------------------------------------------------------------------------------------
    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "ServingClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _model_spec(self, spec, signature: Optional[str] = None) -> None:
        spec.name = self.config.model_name
        if self.config.model_version is not None:
            spec.version.value = self.config.model_version
        if signature is not None:
            spec.signature_name = signature

    def _call(self, method, request, what: str):
        """One RPC with the deadline, retried with backoff while the server is UNAVAILABLE."""
        backoffs = iter(self.config.retry.backoffs())
        while True:
            try:
                return method(request, timeout=self.config.timeout_s)
            except grpc.RpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.UNAVAILABLE:
                    wait = next(backoffs, None)
                    if wait is not None:
                        time.sleep(wait)
                        continue
                    raise ServingUnavailableError(
                        f"TF Serving at {self.config.target} is unavailable "
                        f"({what}, {self.config.retry.max_attempts} attempts): "
                        f"{' '.join((exc.details() or '').split())}"
                    ) from None
                raise ServingRequestError(code, exc.details() or "") from None

    # -- ModelService ---------------------------------------------------------------------------------
    def model_status(self) -> List[Tuple[int, str]]:
        """(version, state name such as AVAILABLE / LOADING / END) of the model's versions, newest first."""
        request = get_model_status_pb2.GetModelStatusRequest()
        self._model_spec(request.model_spec)
        response = self._call(self._models.GetModelStatus, request, "GetModelStatus")
        return [(s.version, _STATE_NAMES.get(s.state, str(s.state))) for s in response.model_version_status]

    def wait_until_ready(self, timeout_s: float = 30.0, poll_s: float = 0.2) -> int:
        """Block until a version of the model is AVAILABLE; returns it. ServingUnavailableError after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        # The client's own backoff, from `poll_s`, with as many attempts as the deadline allows.
        backoffs = dataclasses.replace(self.config.retry, initial_backoff_s=poll_s, max_attempts=sys.maxsize).backoffs()
        last, reachable = "no answer", False
        while True:
            request = get_model_status_pb2.GetModelStatusRequest()
            self._model_spec(request.model_spec)
            try:
                response = self._models.GetModelStatus(
                    request, timeout=max(0.05, min(self.config.timeout_s, deadline - time.monotonic()))
                )
                available = [
                    s.version
                    for s in response.model_version_status
                    if s.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
                ]
                if available:
                    return max(available)
                last, reachable = "no version is AVAILABLE yet", True
            except grpc.RpcError as exc:
                if exc.code() not in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.NOT_FOUND,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                ):
                    raise ServingRequestError(exc.code(), exc.details() or "") from None
                reachable = exc.code() == grpc.StatusCode.NOT_FOUND
                last = f"{exc.code().name}: {' '.join((exc.details() or '').split())}"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if not reachable:
                    raise ServingUnavailableError(
                        f"cannot reach TF Serving at {self.config.target} within {timeout_s:g} s ({last})"
                    )
                raise ServingUnavailableError(
                    f"model {self.config.model_name!r} at {self.config.target} "
                    f"is not ready after {timeout_s:g} s ({last})"
                )
            time.sleep(min(next(backoffs), remaining))

    # -- PredictionService ----------------------------------------------------------------------------
    def metadata(self, signature_name: Optional[str] = None) -> SignatureInfo:
        """The signature's inputs and outputs, from GetModelMetadata (FAILED_PRECONDITION-like error if absent)."""
        name = signature_name or self.config.signature_name
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._model_spec(request.model_spec)
        response = self._call(self._prediction.GetModelMetadata, request, "GetModelMetadata")
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        if name not in signature_map.signature_def:
            raise ServingRequestError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"model {self.config.model_name!r} has no signature {name!r} "
                f"(has {sorted(signature_map.signature_def)})",
            )
        signature = signature_map.signature_def[name]
        info = SignatureInfo(
            name,
            signature.method_name,
            _tensor_info(signature.inputs),
            _tensor_info(signature.outputs),
            response.model_spec.version.value,
        )
        if name == self.config.signature_name:
            self._signature = info
            self._ask_class_names(signature_map)
        return info

    def _ask_class_names(self, signature_map) -> None:
        if self._class_names_asked or CLASS_NAMES_SIGNATURE not in signature_map.signature_def:
            return
        signature = signature_map.signature_def[CLASS_NAMES_SIGNATURE]
        if signature.inputs or len(signature.outputs) != 1:
            return
        request = predict_pb2.PredictRequest()
        self._model_spec(request.model_spec, CLASS_NAMES_SIGNATURE)
        response = self._call(self._prediction.Predict, request, "Predict(class_names)")
        names = from_tensor_proto(next(iter(response.outputs.values()))).reshape(-1)
        with self._lock:
            self._class_names = {i: n.decode() if isinstance(n, bytes) else str(n) for i, n in enumerate(names)}
            self._class_names_asked = True

    def image_input_name(self) -> str:
        """The signature's one string input (the image batch), discovered once through the metadata."""
        info = self._signature or self.metadata()
        strings = [n for n, (dtype, _) in info.inputs.items() if dtype == "DT_STRING"]
        if len(info.inputs) != 1 or len(strings) != 1:
            raise ServingRequestError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"signature {info.name!r} must take one string input (image bytes); it takes {info.inputs}",
            )
        missing = [o for o in REQUIRED_OUTPUTS if o not in info.outputs]
        if missing:
            raise ServingRequestError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"signature {info.name!r} lacks output(s) {missing}; it has {sorted(info.outputs)}",
            )
        return strings[0]

    def predict_request(self, images: Sequence[bytes]) -> predict_pb2.PredictResponse:
        """One Predict of a batch of encoded images on the configured signature (the raw response)."""
        request = predict_pb2.PredictRequest()
        self._model_spec(request.model_spec, self.config.signature_name)
        request.inputs[self.image_input_name()].CopyFrom(to_tensor_proto(list(images)))
        return self._call(self._prediction.Predict, request, "Predict")

    def _class_name(self, index: int) -> str:
        return self._class_names.get(index, f"class_{index}")

    def _learn_class_names(self, response: predict_pb2.PredictResponse) -> Dict[str, np.ndarray]:
        out = {
            k: from_tensor_proto(response.outputs[k])
            for k in REQUIRED_OUTPUTS + OPTIONAL_OUTPUTS
            if k in response.outputs
        }
        unknown = out.get(UNKNOWN, np.zeros(len(out[CLASS_ID]), bool))
        with self._lock:
            if PATTERNS_PRESENT in out:  # multi-label: the name lists the present columns' patterns in order
                for row, name, is_unknown in zip(out[PATTERNS_PRESENT], out[CLASS_NAME].tolist(), unknown.tolist()):
                    columns = np.flatnonzero(row > 0.5)
                    parts = name.decode("utf-8", "replace").split(_PATTERN_SEPARATOR)
                    if not is_unknown and len(columns) and len(columns) == len(parts):
                        for column, part in zip(columns.tolist(), parts):
                            self._class_names.setdefault(int(column), part)
                return out
            for class_id, name, is_unknown in zip(out[CLASS_ID].tolist(), out[CLASS_NAME].tolist(), unknown.tolist()):
                if not is_unknown:  # an unknown input is named "unknown", not by its arg-max class
                    self._class_names.setdefault(int(class_id), name.decode("utf-8", "replace"))
        return out

    def _predictions(self, out: Dict[str, np.ndarray], version: int) -> List[Prediction]:
        with self._lock:
            names = [self._class_names.get(i, f"class_{i}") for i in range(out[PROBABILITIES].shape[1])]
        return predictions_from_outputs(out, names, version)

    def predict_images(
        self, images: Sequence[Union[bytes, np.ndarray]], on_batch: Optional[Callable[[int], None]] = None
    ) -> List[Prediction]:
        """Predictions for PNG/JPEG bytes (sent as they are) or uint8 HxW / HxWx3 arrays (PNG-encoded), in batches.

        All batches are answered before the predictions are built, so class names learned from any
        batch name the probabilities of every one. ``on_batch(n)`` is called as each batch of n is answered.
        """
        encoded = encode_inputs(images)
        answers = []
        step = max(1, self.config.batch_size)
        for start in range(0, len(encoded), step):
            response = self.predict_request(encoded[start : start + step])
            answers.append((self._learn_class_names(response), response.model_spec.version.value))
            if on_batch is not None:
                on_batch(len(encoded[start : start + step]))
        return [p for out, version in answers for p in self._predictions(out, version)]

    def predict_wafer_maps(self, die_maps: Sequence[np.ndarray]) -> List[Prediction]:
        """Predictions for die-state maps (0 off-wafer, 1 pass, 2 fail), rendered and PNG-encoded client-side."""
        return self.predict_images(wafer_maps_to_png(die_maps))
