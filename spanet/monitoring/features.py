"""Per-wafer features of served requests and of training data, the quantities drift is measured on.

From the input: the fail-die fraction (failing dies / on-wafer dies), the on-wafer die count, the
map's rows and columns (a PNG wafer map has one pixel per die, so its height and width) and their
aspect ratio. From the model's answer: the predicted class and whether the input was ``unknown``.
Images that are not wafer maps in the grey-level convention (off 0, pass 128, fail 255: a JPEG or
an inspection photo) still give their size; their die features are left missing.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence

import numpy as np

from spanet.data.classes import FAIL_DIE, OFF_WAFER_DIE
from spanet.data.convention import image_to_die_map
from spanet.data.imageio import decode_image
from spanet.serving.contract import CLASS_NAME, IMAGES_INPUT, UNKNOWN

#: The derived features, by name.
FAIL_FRACTION = "fail_fraction"
DIE_COUNT = "die_count"
MAP_ROWS = "map_rows"
MAP_COLS = "map_cols"
ASPECT_RATIO = "aspect_ratio"
PREDICTED_CLASS = "predicted_class"
#: The served ``unknown`` output as a category ("true" / "false"; missing if the model has no such output).
UNKNOWN_FLAG = "unknown"

#: Numeric features (compared by Jensen-Shannon divergence) and categorical ones (by L-infinity distance).
NUMERIC_FEATURES = (FAIL_FRACTION, DIE_COUNT, MAP_ROWS, MAP_COLS, ASPECT_RATIO)
CATEGORICAL_FEATURES = (PREDICTED_CLASS, UNKNOWN_FLAG)
#: Numeric features set by the die grid: one value per lot in practice (its wafers share the grid).
GEOMETRY_FEATURES = (DIE_COUNT, MAP_ROWS, MAP_COLS, ASPECT_RATIO)
#: Integer-valued numeric features (the rest are floats).
INT_FEATURES = (DIE_COUNT, MAP_ROWS, MAP_COLS)

Row = Dict[str, Any]


def image_features(image: np.ndarray) -> Row:
    """The input features of one decoded image (uint8 HxW or HxWx3); die features None if not a wafer map."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] >= 3 and (arr[:, :, :1] == arr[:, :, 1:3]).all():
        arr = arr[:, :, 0]  # a grey map saved as RGB
    rows, cols = int(arr.shape[0]), int(arr.shape[1])
    row: Row = {MAP_ROWS: rows, MAP_COLS: cols, ASPECT_RATIO: cols / rows if rows else None}
    row[FAIL_FRACTION] = row[DIE_COUNT] = None
    if arr.ndim == 2:
        try:
            dies = image_to_die_map(arr.astype(np.uint8, copy=False))
        except ValueError:
            return row  # not in the wafer-map convention: size only
        on_wafer = int(np.count_nonzero(dies != OFF_WAFER_DIE))
        row[DIE_COUNT] = on_wafer
        row[FAIL_FRACTION] = int(np.count_nonzero(dies == FAIL_DIE)) / on_wafer if on_wafer else None
    return row


def encoded_image_features(data: bytes) -> Row:
    """:func:`image_features` of PNG/JPEG bytes; every input feature None if they do not decode."""
    try:
        return image_features(decode_image(data))
    except ValueError:
        return {name: None for name in (FAIL_FRACTION, DIE_COUNT, MAP_ROWS, MAP_COLS, ASPECT_RATIO)}


def answer_features(class_name: Optional[str], unknown: Optional[bool]) -> Row:
    """The answer features of one input: its predicted class and the ``unknown`` flag as categories."""
    return {
        PREDICTED_CLASS: class_name,
        UNKNOWN_FLAG: None if unknown is None else ("true" if unknown else "false"),
    }


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def prediction_log_rows(record: Any) -> List[Row]:
    """One feature row per image of a logged Predict call (a ``PredictionLog`` with a ``predict_log``).

    Calls of other kinds, or without the ``images`` input, give no rows.
    """
    from spanet.serving.tensors import from_tensor_proto

    if record.WhichOneof("log_type") != "predict_log":
        return []
    request, response = record.predict_log.request, record.predict_log.response
    if IMAGES_INPUT not in request.inputs:
        return []
    images = from_tensor_proto(request.inputs[IMAGES_INPUT]).reshape(-1)
    outputs = response.outputs
    names = from_tensor_proto(outputs[CLASS_NAME]).reshape(-1) if CLASS_NAME in outputs else None
    unknown = from_tensor_proto(outputs[UNKNOWN]).reshape(-1) if UNKNOWN in outputs else None
    rows = []
    for i, data in enumerate(images):
        row = encoded_image_features(bytes(data))
        row.update(
            answer_features(
                _text(names[i]) if names is not None and i < len(names) else None,
                bool(unknown[i]) if unknown is not None and i < len(unknown) else None,
            )
        )
        rows.append(row)
    return rows


def log_rows(records: Iterable[Any]) -> Iterator[Row]:
    """Feature rows of every image of every logged Predict call."""
    for record in records:
        yield from prediction_log_rows(record)


def record_rows(
    images: Sequence[np.ndarray], class_names: Sequence[Optional[str]], unknown: Sequence[Optional[bool]]
) -> List[Row]:
    """Feature rows of decoded training images with their (predicted or labelled) classes."""
    rows = []
    for image, name, flag in zip(images, class_names, unknown):
        row = image_features(image)
        row.update(answer_features(name, flag))
        rows.append(row)
    return rows


def columns(rows: Sequence[Mapping[str, Any]]) -> Dict[str, list]:
    """Rows -> one list per feature (the layout a pandas DataFrame is built from)."""
    return {name: [row.get(name) for row in rows] for name in NUMERIC_FEATURES + CATEGORICAL_FEATURES}
