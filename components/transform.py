"""Transform's ``preprocessing_fn``: PNG/JPEG bytes -> a fixed-size float image, class name -> id
(and, in multi-label mode, the multi-hot vector of the patterns a label names).

The same graph is attached to the exported model, so serving decodes and resizes
exactly as training did, and the label vocabulary (an asset of the graph) turns
class ids back into class names.
"""

from __future__ import annotations


from typing import Any, Dict, Mapping, Optional

import tensorflow as tf
import tensorflow_transform as tft

from components import features
from components.config import IMAGE_XF, IS_DEFECT_XF, LABEL_VOCABULARY, LABEL_XF, PATTERNS_XF, ImageConfig
from spanet.data.classes import MIXED_LABEL_SEPARATOR

#: :func:`supported`: a pixel keeps its level where this many of its eight neighbours reach it too.
SUPPORT_NEIGHBOURS = 2


def decode(encoded: tf.Tensor, config: ImageConfig) -> tf.Tensor:
    """One encoded image (PNG, JPEG, BMP, GIF; any size, grey or RGB) -> uint8 (H, W, C) with C = config.channels."""
    return tf.io.decode_image(encoded, channels=config.channels, expand_animations=False)


def max_resize(image: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """float (H, W, C) -> (height, width, C), each pixel the maximum over its footprint in the image.

    Nearest-neighbour resizing to a whole multiple of the target (every source pixel lands in some
    block), then the maximum over each block; an image smaller than the target is simply enlarged.
    """
    shape = tf.shape(image)
    rows = tf.maximum(1, -(-shape[0] // height))  # ceil
    cols = tf.maximum(1, -(-shape[1] // width))
    enlarged = tf.image.resize(image, tf.stack([height * rows, width * cols]), method="nearest")
    blocks = tf.reshape(enlarged, tf.stack([height, rows, width, cols, shape[2]]))
    return tf.reduce_max(blocks, axis=[1, 3])


def supported(image: tf.Tensor, neighbours: int = SUPPORT_NEIGHBOURS) -> tf.Tensor:
    """float (H, W, C) -> (H, W, C): each pixel capped at the level that ``neighbours`` of its eight
    neighbours reach too (a rank filter over the 3 x 3 window, outside the image counting as 0).

    On a wafer map a fail die with fewer than two failing neighbours drops to the pass level, so
    scattered background failures vanish while lines (a scratch's dies have two neighbours on it) and
    blobs keep their level: on a large grid the footprint maximum alone lights a fifth of the pixels
    at 6 % background failures, burying a thin scratch.
    """
    shape = tf.shape(image)
    padded = tf.pad(image[None], [[0, 0], [1, 1], [1, 1], [0, 0]])
    windows = tf.image.extract_patches(
        padded, sizes=[1, 3, 3, 1], strides=[1, 1, 1, 1], rates=[1, 1, 1, 1], padding="VALID"
    )
    # (1, H, W, 9 * C), ordered window row, window column, channel -> (H, W, C, 9).
    windows = tf.transpose(tf.reshape(windows, tf.stack([shape[0], shape[1], 9, shape[2]])), [0, 1, 3, 2])
    # The window holds the pixel itself: its (neighbours + 1)-th largest value is the level reached by
    # the pixel and at least ``neighbours`` others, or by ``neighbours + 1`` neighbours.
    level = tf.math.top_k(windows, k=neighbours + 1, sorted=True).values[..., neighbours]
    return tf.minimum(image, level)


def resize(image: tf.Tensor, config: ImageConfig) -> tf.Tensor:
    """One uint8 image (H, W, C) -> float32 (height, width, input_channels) in [0, 1].

    Area averaging, so that a wafer map's die survives as a grey level whatever the map's size; with
    ``config.max_channel`` also the footprint maximum (:func:`max_resize`), where a thin line keeps its
    level; with ``config.support_channel`` also the footprint maximum of :func:`supported` pixels, where
    the line stands out from scattered failures.
    """
    image = tf.image.convert_image_dtype(image, tf.float32)
    channels = [tf.image.resize(image, [config.height, config.width], method="area")]
    if config.max_channel:
        channels.append(max_resize(image, config.height, config.width))
    if config.support_channel:
        channels.append(max_resize(supported(image), config.height, config.width))
    resized = tf.concat(channels, axis=-1)
    return tf.ensure_shape(resized, [config.height, config.width, config.input_channels])


def decode_and_resize(images: tf.Tensor, config: ImageConfig) -> tf.Tensor:
    """A batch of encoded images -> float32 (B, H, W, C) in [0, 1]: :func:`decode` then :func:`resize`.

    The Trainer applies the same two steps (with augmentation between them), so training and
    serving see identical pixels.
    """
    images = tf.reshape(images, [-1])
    return tf.map_fn(
        lambda encoded: resize(decode(encoded, config), config),
        images,
        fn_output_signature=tf.TensorSpec([config.height, config.width, config.input_channels], tf.float32),
    )


def multi_hot(labels: tf.Tensor, patterns) -> tf.Tensor:
    """(B,) labels such as ``b"Center+Edge-Loc"`` -> float32 (B, P): 1 where the label names the pattern.

    A label naming none of ``patterns`` (the normal class) is all zeros.
    """
    parts = tf.strings.split(tf.reshape(labels, [-1]), MIXED_LABEL_SEPARATOR).to_tensor(default_value="")
    named = tf.equal(parts[:, :, None], tf.constant(list(patterns))[None, None, :])
    return tf.cast(tf.reduce_any(named, axis=1), tf.float32)


def preprocessing_fn(
    inputs: Mapping[str, tf.Tensor], custom_config: Optional[Dict[str, Any]] = None
) -> Dict[str, tf.Tensor]:
    """TFX Transform entry point (``module_file`` or ``preprocessing_fn='components.transform.preprocessing_fn'``)."""
    config = ImageConfig.from_custom_config(custom_config)
    outputs = {IMAGE_XF: decode_and_resize(inputs[features.IMAGE_KEY], config)}
    if features.LABEL_KEY in inputs:
        label = tf.reshape(inputs[features.LABEL_KEY], [-1])
        outputs[LABEL_XF] = tft.compute_and_apply_vocabulary(label, vocab_filename=LABEL_VOCABULARY)
        outputs[IS_DEFECT_XF] = tf.cast(tf.not_equal(label, config.normal_class), tf.float32)
        if config.multilabel:
            outputs[PATTERNS_XF] = multi_hot(label, config.patterns)
    return outputs
