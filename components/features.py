"""The tf.Example feature keys written by the wafer ExampleGen and read by Transform / Evaluator.

The single place these names live. `image` is lossless PNG bytes (wafer maps: 8-bit grey, one
pixel per die, off-wafer 0 / pass 128 / fail 255; images: the decoded pixels re-encoded, grey or
RGB as the source was); `label` is the class name (mixed wafer types joined with ``+``).

`size_bucket` and `aspect_bucket` are computed here, once, from the original map shape, so that
the Evaluator can slice by what real data varies in (WM-811K shapes run from 6x21 to 300x202).
Their bucket edges live only in this module (:data:`SIZE_BUCKET_EDGES`, :data:`ASPECT_BUCKET_EDGES`).
"""

import math
from typing import Dict, Mapping, Tuple

import tensorflow as tf

from spanet.data.imageio import encode_png
from spanet.data.records import WaferRecord

#: bytes: lossless PNG of the image / wafer map.
IMAGE_KEY = "image"
#: bytes: the class name (one of WAFER_CLASSES for wafer maps; folder / manifest name for images).
LABEL_KEY = "label"
#: bytes: lot id ("" where unknown); the unit of the train / eval split.
LOT_ID_KEY = "lot_id"
#: bytes: wafer id within the lot ("" where unknown).
WAFER_ID_KEY = "wafer_id"
#: bytes: inspection stage or product ("" where unknown; optional in the schema).
STAGE_KEY = "stage"
#: bytes: the reader / format the example came from (png, npz, g85, wm811k).
SOURCE_KEY = "source"
#: int64: the original map / image height and width.
HEIGHT_KEY = "height"
WIDTH_KEY = "width"
#: bytes: the map size bucket (one of SIZE_BUCKETS), from the original shape.
SIZE_BUCKET_KEY = "size_bucket"
#: bytes: the aspect-ratio bucket (one of ASPECT_BUCKETS), from the original shape.
ASPECT_BUCKET_KEY = "aspect_bucket"

#: Size = sqrt(height * width), the geometric mean of the sides (dies a side for wafer maps, pixels
#: for images). Buckets are half-open: [0, 25), [25, 50), [50, 100), [100, inf).
SIZE_BUCKET_EDGES: Tuple[float, ...] = (25.0, 50.0, 100.0)
SIZE_BUCKETS: Tuple[str, ...] = ("<25", "25-50", "50-100", ">=100")
#: Aspect = width / height: "tall" below 0.8, "square" from 0.8 to 1.25 (both included), "wide" above 1.25.
ASPECT_BUCKET_EDGES: Tuple[float, float] = (0.8, 1.25)
ASPECT_BUCKETS: Tuple[str, ...] = ("tall", "square", "wide")

#: Every key an ingested example carries.
FEATURE_KEYS: Tuple[str, ...] = (
    IMAGE_KEY,
    LABEL_KEY,
    LOT_ID_KEY,
    WAFER_ID_KEY,
    STAGE_KEY,
    SOURCE_KEY,
    HEIGHT_KEY,
    WIDTH_KEY,
    SIZE_BUCKET_KEY,
    ASPECT_BUCKET_KEY,
)
#: The bytes-valued keys (all but height / width).
BYTES_KEYS: Tuple[str, ...] = tuple(key for key in FEATURE_KEYS if key not in (HEIGHT_KEY, WIDTH_KEY))
INT_KEYS: Tuple[str, ...] = (HEIGHT_KEY, WIDTH_KEY)


def _check_shape(height: int, width: int) -> None:
    if height < 1 or width < 1:
        raise ValueError(f"a map shape needs positive sides; got {height}x{width}")


def size_bucket(height: int, width: int) -> str:
    """The size bucket of a height x width map: by sqrt(height * width) against SIZE_BUCKET_EDGES."""
    _check_shape(height, width)
    size = math.sqrt(float(height) * float(width))
    for edge, name in zip(SIZE_BUCKET_EDGES, SIZE_BUCKETS):
        if size < edge:
            return name
    return SIZE_BUCKETS[-1]


def aspect_bucket(height: int, width: int) -> str:
    """The aspect bucket of a height x width map: width / height against ASPECT_BUCKET_EDGES."""
    _check_shape(height, width)
    aspect = float(width) / float(height)
    low, high = ASPECT_BUCKET_EDGES
    if aspect < low:
        return ASPECT_BUCKETS[0]
    if aspect > high:
        return ASPECT_BUCKETS[2]
    return ASPECT_BUCKETS[1]


def int_bounds(schema) -> Dict[str, Tuple[int, int]]:
    """The per-record [min, max] of every integer feature the schema bounds (``int_domain``)."""
    bounds = {}
    for feature in schema.feature:
        if feature.HasField("int_domain"):
            domain = feature.int_domain
            bounds[feature.name] = (
                domain.min if domain.HasField("min") else -(2**63),
                domain.max if domain.HasField("max") else 2**63 - 1,
            )
    return bounds


def out_of_bounds(record: WaferRecord, bounds: Mapping[str, Tuple[int, int]]) -> str:
    """Why a record's example would break the schema's per-record bounds ("" when it would not).

    Checked at ingestion, so that one oversized image is quarantined with its file instead of
    failing ExampleValidator for the whole data set.
    """
    height, width = record.original_shape
    for key, value in ((HEIGHT_KEY, height), (WIDTH_KEY, width)):
        if key in bounds and not bounds[key][0] <= value <= bounds[key][1]:
            low, high = bounds[key]
            return f"{key} {value} (shape {height}x{width}) is outside the schema's range [{low}, {high}]"
    return ""


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def record_to_example(record: WaferRecord) -> tf.train.Example:
    """Build the tf.Example of one record (PNG-encodes its image)."""
    height, width = record.original_shape
    feature = {
        IMAGE_KEY: _bytes(encode_png(record.image)),
        LABEL_KEY: _bytes(record.label.encode("utf-8")),
        LOT_ID_KEY: _bytes(record.lot_id.encode("utf-8")),
        WAFER_ID_KEY: _bytes(record.wafer_id.encode("utf-8")),
        STAGE_KEY: _bytes((record.stage or "").encode("utf-8")),
        SOURCE_KEY: _bytes(record.source.encode("utf-8")),
        HEIGHT_KEY: _int(height),
        WIDTH_KEY: _int(width),
        SIZE_BUCKET_KEY: _bytes(size_bucket(height, width).encode("utf-8")),
        ASPECT_BUCKET_KEY: _bytes(aspect_bucket(height, width).encode("utf-8")),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))
