"""Telling inputs unlike every class apart: two calibrated checks, one on features, one on pixels.

A classifier answers every input with some class; an input unlike all of its training data (noise,
a blank or saturated image, a photograph) must instead come back *unknown*. Two checks, both
calibrated on held-out in-distribution data, and an input failing either is unknown:

- **familiarity**: the largest cosine similarity between the input's embedding and a class
  weight (the cosine head's own output). Circle Loss pulls training wafers to similarities near
  1 - m with their class; an input far from every class has a low maximum.
  A multi-label model (one cosine per pattern, a normal wafer near none) uses instead how decided
  its least decided pattern is: the smallest distance of a cosine from the present / absent
  boundary (:func:`multilabel_familiarity`).
- **input envelope**: three pixel statistics of the model input (share of black pixels, share of
  dark-grey pixels between black and a pass die's grey, mean level) must lie inside the range
  the training data spans. Learnt from the data, so it means "like the training images" whatever
  the images are (wafer maps, inspection images); features alone can be fooled by inputs the
  network maps near a class by accident (a blank image is all "off-wafer", which nothing
  forbids the network from calling Near-full).
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

from spanet.calibration import SIGMOID_BOUNDARY

#: Pixel levels (inputs scaled to [0, 1]) that split black / dark grey / the rest.
BLACK_LEVEL = 0.02
DARK_LEVEL = 0.4
#: Names of the statistics, in the order :func:`input_statistics` returns them.
STATISTICS: Tuple[str, ...] = ("black_share", "dark_share", "mean_level")
#: How far beyond the training data's range an input may lie before it is unknown. Measured on the
#: cross-recipe stress set: wafer maps diced another way lie up to 0.08 outside the generator's range
#: (their grids crop the wafer differently), while noise, blank, saturated images and a photograph
#: lie 0.18-0.77 outside. 0.02 marked 13 % of the stress set's normal wafers unknown; 0.1 marks none.
ENVELOPE_MARGIN = 0.1


def input_statistics(images, channels: Optional[int] = None) -> tf.Tensor:
    """(B, 3) float32: share of black pixels, share of dark-grey pixels, mean level of model inputs
    (B, H, W, C) in [0, 1], over their first ``channels`` channels (None: all).

    Models whose input adds derived channels after the image (a footprint maximum, ...) pass the
    image's own channel count: the envelope and its margin were measured on the image, and derived
    channels moved it (with a support channel, Random maps' channels reached a map with every die
    failing).
    """
    images = tf.convert_to_tensor(images, tf.float32)
    if channels is not None:
        images = images[..., :channels]
    axes = tf.range(1, tf.rank(images))
    black = tf.reduce_mean(tf.cast(images < BLACK_LEVEL, tf.float32), axis=axes)
    dark = tf.reduce_mean(tf.cast((images >= BLACK_LEVEL) & (images < DARK_LEVEL), tf.float32), axis=axes)
    return tf.stack([black, dark, tf.reduce_mean(images, axis=axes)], axis=-1)


def fit_envelope(statistics: np.ndarray, margin: float = ENVELOPE_MARGIN) -> Tuple[np.ndarray, np.ndarray]:
    """(low, high) per statistic: the range of in-distribution ``statistics`` (N, 3), widened by ``margin``.

    Without data the envelope admits everything ([-inf, inf] is not JSON, so [-1, 2] on [0, 1] statistics).
    """
    statistics = np.asarray(statistics, dtype=np.float64).reshape(-1, len(STATISTICS))
    if statistics.shape[0] == 0:
        return np.full(len(STATISTICS), -1.0), np.full(len(STATISTICS), 2.0)
    return statistics.min(axis=0) - margin, statistics.max(axis=0) + margin


def outside_envelope(statistics, low, high) -> tf.Tensor:
    """(B,) bool: any statistic below its low or above its high bound."""
    statistics = tf.convert_to_tensor(statistics, tf.float32)
    low, high = tf.cast(low, tf.float32), tf.cast(high, tf.float32)
    return tf.reduce_any((statistics < low) | (statistics > high), axis=-1)


def multilabel_familiarity(cosines, boundary: float = SIGMOID_BOUNDARY) -> tf.Tensor:
    """(B,) the smallest |cos - boundary| over a multi-label model's patterns (B, P)."""
    return tf.reduce_min(tf.abs(tf.convert_to_tensor(cosines, tf.float32) - boundary), axis=-1)


def familiarity_threshold(familiarity: np.ndarray, max_reject_rate: float) -> float:
    """The threshold below which a familiarity is unknown, from in-distribution wafers' familiarities.

    Conformal: with n calibration values, the k-th smallest for k = floor(rate * (n + 1)) rejects a
    new in-distribution wafer with probability at most k / (n + 1) <= rate (its rank among the n + 1
    is uniform), and rejects k - 1 of the calibration wafers. With too few wafers for that (k = 0)
    nothing is rejected on familiarity: -1, the smallest cosine similarity there is.
    """
    values = np.sort(np.asarray(familiarity, dtype=np.float64).reshape(-1))
    k = int(math.floor(max_reject_rate * (values.size + 1) + 1e-9))
    if k == 0:
        return -1.0
    return float(values[k - 1])
