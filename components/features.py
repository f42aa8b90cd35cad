"""The tf.Example feature keys written by the wafer ExampleGen and read by Transform / Evaluator.

The single place these names live. `image` is lossless PNG bytes (wafer maps: 8-bit grey, one
pixel per die, off-wafer 0 / pass 128 / fail 255; images: the decoded pixels re-encoded, grey or
RGB as the source was); `label` is the class name (mixed wafer types joined with ``+``).
"""

from typing import Tuple

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

#: Every key an ingested example carries.
FEATURE_KEYS: Tuple[str, ...] = (
    IMAGE_KEY, LABEL_KEY, LOT_ID_KEY, WAFER_ID_KEY, STAGE_KEY, SOURCE_KEY, HEIGHT_KEY, WIDTH_KEY,
)
#: The bytes-valued keys (all but height / width).
BYTES_KEYS: Tuple[str, ...] = (IMAGE_KEY, LABEL_KEY, LOT_ID_KEY, WAFER_ID_KEY, STAGE_KEY, SOURCE_KEY)
INT_KEYS: Tuple[str, ...] = (HEIGHT_KEY, WIDTH_KEY)


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
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))
