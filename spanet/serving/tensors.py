"""TensorProto <-> numpy, and the checks TF Serving makes of a request's inputs against a signature.

Messages follow TF Serving's (``predict_util.cc``) so that a client sees the same text from the
local server as from ``tensorflow_model_server``.
"""

from typing import Dict, Mapping, Sequence, Union

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from spanet.serving.errors import invalid_argument

ArrayLike = Union[np.ndarray, Sequence[bytes]]


def to_tensor_proto(values: ArrayLike, dtype: tf.DType = None) -> tensor_pb2.TensorProto:
    """A TensorProto of `values` (a numpy array, or a list of bytes for a string batch)."""
    if dtype is None and isinstance(values, (list, tuple)) and values and isinstance(values[0], (bytes, str)):
        dtype = tf.string
    return tf.make_tensor_proto(values, dtype=dtype)


def from_tensor_proto(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """The numpy value of `proto` (strings come back as an object array of bytes)."""
    return tf.make_ndarray(proto)


def proto_shape(proto: tensor_pb2.TensorProto) -> tf.TensorShape:
    """The shape a TensorProto declares (unknown rank when it says so)."""
    if proto.tensor_shape.unknown_rank:
        return tf.TensorShape(None)
    return tf.TensorShape([d.size for d in proto.tensor_shape.dim])


def _dtype_name(enum: int) -> str:
    """TensorFlow's own name of a dtype enum, as in its messages: DT_FLOAT -> float, DT_STRING -> string."""
    try:
        return types_pb2.DataType.Name(enum)[len("DT_") :].lower()
    except ValueError:
        return f"dtype enum {enum}"


def _dims(shape: tf.TensorShape) -> str:
    if shape.rank is None:
        return "<unknown>"
    return "[" + ",".join("?" if d is None else str(d) for d in shape.as_list()) + "]"


def _num_elements(shape: tf.TensorShape) -> int:
    count = 1
    for d in shape.as_list():
        count *= d
    return count


def _check_values(alias: str, proto: tensor_pb2.TensorProto, shape: tf.TensorShape) -> None:
    """The values a proto holds must be as many as its shape declares, and at least one."""
    if shape.rank is None or None in shape.as_list():
        return
    declared = _num_elements(shape)
    if declared == 0 and shape.rank > 0:
        raise invalid_argument(f"input {alias} is an empty batch (shape {_dims(shape)}): send at least one value")
    if proto.dtype == types_pb2.DT_STRING:
        sent = len(proto.string_val)
        if sent != declared:
            raise invalid_argument(
                f"input {alias} declares shape {_dims(shape)} ({declared} values) but holds {sent} values"
            )
    elif proto.tensor_content:
        itemsize = tf.as_dtype(proto.dtype).size
        if len(proto.tensor_content) != declared * itemsize:
            raise invalid_argument(
                f"input {alias} declares shape {_dims(shape)} ({declared} values, {declared * itemsize} bytes of "
                f"{_dtype_name(proto.dtype)}) but its tensor_content holds {len(proto.tensor_content)} bytes"
            )


def validate_inputs(inputs: Mapping[str, tensor_pb2.TensorProto], specs: Mapping[str, tf.TensorSpec]) -> None:
    """Check request `inputs` against the signature's input `specs`, without converting anything.

    Raises INVALID_ARGUMENT (like TF Serving) for missing or extra aliases, a dtype other than the
    signature's, or a shape the signature does not accept; and (clearer than TF Serving, which pads
    or truncates) for an empty batch or a number of values other than the declared shape holds.
    """
    sent, wanted = set(inputs), set(specs)
    if len(sent) != len(wanted):
        raise invalid_argument(
            f"input size does not match signature: {len(sent)}!={len(wanted)} len({{{','.join(sorted(sent))}}}) != "
            f"len({{{','.join(sorted(wanted))}}}). Sent extra: {{{','.join(sorted(sent - wanted))}}}. "
            f"Missing but required: {{{','.join(sorted(wanted - sent))}}}."
        )
    for position, alias in enumerate(sorted(inputs)):
        if alias not in specs:
            raise invalid_argument(
                f"input tensor alias not found in signature: {alias}. "
                f"Inputs expected to be in the set {{{','.join(sorted(wanted))}}}."
            )
        proto, spec = inputs[alias], specs[alias]
        if proto.dtype != spec.dtype.as_datatype_enum:
            raise invalid_argument(
                f"Expects arg[{position}] ({alias}) to be {_dtype_name(spec.dtype.as_datatype_enum)} "
                f"but {_dtype_name(proto.dtype)} is provided"
            )
        shape = proto_shape(proto)
        if not spec.shape.is_compatible_with(shape):
            raise invalid_argument(
                f"input {alias} has shape {_dims(shape)}, but the signature expects {_dims(spec.shape)}"
            )
        _check_values(alias, proto, shape)


def convert_inputs(
    inputs: Mapping[str, tensor_pb2.TensorProto], specs: Mapping[str, tf.TensorSpec]
) -> Dict[str, tf.Tensor]:
    """Request `inputs` (already validated) as tensors of the signature's dtypes; INVALID_ARGUMENT if one
    cannot be parsed."""
    tensors = {}
    for alias in sorted(inputs):
        try:
            value = from_tensor_proto(inputs[alias])
        except Exception:  # malformed content (wrong value count, bad bytes): TF Serving's FromProto failure
            raise invalid_argument(f"tensor parsing error: {alias}") from None
        tensors[alias] = tf.constant(value, dtype=specs[alias].dtype)
    return tensors


def check_inputs(
    inputs: Mapping[str, tensor_pb2.TensorProto], specs: Mapping[str, tf.TensorSpec]
) -> Dict[str, tf.Tensor]:
    """Validate request `inputs` against the signature's input `specs` and convert them to tensors."""
    validate_inputs(inputs, specs)
    return convert_inputs(inputs, specs)
