"""The request handlers TF Serving's PredictionService and ModelService implement, on loaded versions.

Transport-free: the gRPC servicers and the REST front end both call these, and so does warm-up.
Each raises `ServingError` with the status code TF Serving would use.
"""

import re
from typing import Dict, List, Optional

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import any_pb2
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
)

from spanet.serving.config import DEFAULT_SIGNATURE
from spanet.serving.errors import ServingError, invalid_argument, status_code_from_tf
from spanet.serving.limits import RequestGuard
from spanet.serving.model_manager import ModelManager, ServableVersion
from spanet.serving.request_log import RequestLogger
from spanet.serving.tensors import convert_inputs, to_tensor_proto, validate_inputs

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
SIGNATURE_DEF_FIELD = "signature_def"
#: TF error messages carry the graph node after this marker: clients need the first part only.
_NODE_MARKER = "\n\t [["


def requested_version(request_spec) -> "int | None":
    """The version a ModelSpec pins, or None for the newest."""
    return request_spec.version.value if request_spec.HasField("version") else None


def find_signature(servable: ServableVersion, name: str):
    """(name, SignatureDef) of the asked signature (default ``serving_default``); FAILED_PRECONDITION if
    absent, as TF Serving."""
    name = name or DEFAULT_SIGNATURE
    if name not in servable.signature_defs or name not in servable.functions:
        raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{name}" not found.')
    return name, servable.signature_defs[name]


def run_signature(servable: ServableVersion, signature_name: str, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Call a signature; TensorFlow's runtime errors (e.g. an undecodable image) become their status codes."""
    try:
        return servable.functions[signature_name](**inputs)
    except tf.errors.OpError as exc:
        raise ServingError(status_code_from_tf(exc.error_code), clean_tf_message(exc.message or str(exc))) from None


def clean_tf_message(message: str) -> str:
    """TensorFlow's error text without the eager preamble and stack: the error line, plus the op's node."""
    message = message.split(_NODE_MARKER)[0]
    node = re.search(r"Detected at node (\S+)", message)
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    core = lines[-1] if lines else message.strip()
    return (f"{core} [node {node.group(1)}]" if node else core)[:2000]


def predict(
    manager: ModelManager,
    request: predict_pb2.PredictRequest,
    guard: RequestGuard,
    wait_s: Optional[float] = None,
    request_log: Optional[RequestLogger] = None,
) -> predict_pb2.PredictResponse:
    """Predict: run the asked signature of the asked (or newest) version on the request's inputs.

    The request is checked against `guard`'s limits before anything is decoded; then it waits (up
    to `wait_s`, or the guard's own limit) for one of the guard's slots to convert, decode and run.
    A successful call is offered to `request_log` (gRPC and REST alike; warm-up passes none).
    """
    spec = request.model_spec
    servable = manager.get(spec.name, requested_version(spec))
    name, signature = find_signature(servable, spec.signature_name)
    specs = servable.input_specs(name)
    validate_inputs(request.inputs, specs)
    guard.check_request(request.inputs)
    wanted = list(request.output_filter)
    for alias in wanted:
        if alias not in signature.outputs:
            raise invalid_argument(
                f"output tensor alias not found in signature: {alias} Outputs expected to be in the set "
                f"{{{','.join(sorted(signature.outputs))}}}."
            )
    if len(set(wanted)) != len(wanted):
        raise invalid_argument(f"duplicate output tensor alias: {wanted}")
    response = predict_pb2.PredictResponse()
    response.model_spec.name = spec.name
    response.model_spec.version.value = servable.version
    response.model_spec.signature_name = name
    with guard.slot(wait_s):
        outputs = run_signature(servable, name, convert_inputs(request.inputs, specs))
        for alias in wanted or sorted(outputs):
            response.outputs[alias].CopyFrom(to_tensor_proto(outputs[alias].numpy()))
    if request_log is not None:
        request_log.log_predict(request, response)  # never raises
    return response


def _serialized_examples(request: classification_pb2.ClassificationRequest) -> List[bytes]:
    kind = request.input.WhichOneof("kind")
    if kind == "example_list":
        return [e.SerializeToString() for e in request.input.example_list.examples]
    if kind == "example_list_with_context":
        ctx = request.input.example_list_with_context.context
        merged = []
        for e in request.input.example_list_with_context.examples:
            ex = example_pb2.Example()
            ex.CopyFrom(ctx)
            ex.MergeFrom(e)
            merged.append(ex.SerializeToString())
        return merged
    raise invalid_argument("Input is empty")


def classify(
    manager: ModelManager,
    request: classification_pb2.ClassificationRequest,
    guard: RequestGuard,
    wait_s: Optional[float] = None,
) -> classification_pb2.ClassificationResponse:
    """Classify: only for signatures with the classify method (inputs: serialized tf.Examples), within
    `guard`'s limits."""
    spec = request.model_spec
    servable = manager.get(spec.name, requested_version(spec))
    name, signature = find_signature(servable, spec.signature_name)
    if signature.method_name != CLASSIFY_METHOD:
        raise invalid_argument(
            f"Expected classification signature method_name to be {CLASSIFY_METHOD}. Was: {signature.method_name}"
        )
    examples = _serialized_examples(request)
    if not examples:
        raise invalid_argument("ClassificationRequest has no examples")
    guard.check_examples(examples)
    (input_name,) = servable.input_specs(name)
    with guard.slot(wait_s):
        outputs = run_signature(servable, name, {input_name: tf.constant(examples, dtype=tf.string)})
        classes = outputs["classes"].numpy() if "classes" in outputs else None
        scores = outputs["scores"].numpy() if "scores" in outputs else None
    response = classification_pb2.ClassificationResponse()
    response.model_spec.name = spec.name
    response.model_spec.version.value = servable.version
    response.model_spec.signature_name = name
    rows = (classes if classes is not None else scores).shape[0]
    for i in range(rows):
        result = response.result.classifications.add()
        width = (classes if classes is not None else scores).shape[1]
        for j in range(width):
            c = result.classes.add()
            if classes is not None:
                c.label = classes[i, j].decode("utf-8", "replace")
            if scores is not None:
                c.score = float(np.asarray(scores)[i, j])
    return response


def model_metadata(
    manager: ModelManager, request: get_model_metadata_pb2.GetModelMetadataRequest
) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """GetModelMetadata: the served version's SignatureDef map, packed in an Any under ``signature_def``."""
    if not request.HasField("model_spec"):
        raise invalid_argument("Missing ModelSpec")
    if not request.metadata_field:
        raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
    for field in request.metadata_field:
        if field != SIGNATURE_DEF_FIELD:
            raise invalid_argument(f"Metadata field {field} is not supported")
    servable = manager.get(request.model_spec.name, requested_version(request.model_spec))
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in servable.signature_defs.items():
        signature_map.signature_def[key].CopyFrom(signature)
    packed = any_pb2.Any()
    packed.Pack(signature_map)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = request.model_spec.name
    response.model_spec.version.value = servable.version
    response.metadata[SIGNATURE_DEF_FIELD].CopyFrom(packed)
    return response


def model_status(
    manager: ModelManager, request: get_model_status_pb2.GetModelStatusRequest
) -> get_model_status_pb2.GetModelStatusResponse:
    """GetModelStatus: the state of each version the server knows (AVAILABLE, LOADING, END)."""
    spec = request.model_spec
    response = get_model_status_pb2.GetModelStatusResponse()
    for version, state, error in manager.status(spec.name, requested_version(spec)):
        status = response.model_version_status.add()
        status.version = version
        status.state = state
        status.status.SetInParent()  # always present, as TF Serving reports it (error_code OK)
        if error:
            status.status.error_code = grpc.StatusCode.UNKNOWN.value[0]
            status.status.error_message = error
    return response
