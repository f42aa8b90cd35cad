"""Inference on the two halves of a batch side by side, so that both CPU cores work on the small late maps.

Most of SP&A-Net's ops work on 4x4 and 2x2 maps, too small for TensorFlow to spread one op over
two cores, and in a single chain of them one op runs at a time: a core idles. In inference every
image is independent (BatchNorm reads its moving statistics; attention and LayerNorm act per
image), so the batch is cut in two and the network traced once for each half: TensorFlow's two
inter-op threads then run the halves at once. The outputs are the same numbers (each image is
computed by the same ops); the halves are joined back in order.

Training cannot do this: BatchNorm's statistics span the whole batch. It splits the channels instead,
which BatchNorm treats independently (``spanet.layers.parts``).
"""

from __future__ import annotations

from typing import Any, Callable

from spanet._keras import tf


def call_in_halves(function: Callable[[tf.Tensor], Any], images: tf.Tensor) -> Any:
    """``function(images)``, computed as two independent calls on the batch's halves (for graph mode).

    The halves are the first and the last ``ceil(n / 2)`` images: slices of the batch along its first
    axis, which share its buffer (a padded copy of the batch cost 0.7 ms of a 38 ms step). In an odd
    batch they share the middle image, whose second answer is dropped, so neither half is ever empty.
    ``function`` must treat images independently (a model in inference). Tracing costs twice a plain
    call; the two copies of the graph are what runs in parallel.
    """
    count = tf.shape(images)[0]
    half = (count + 1) // 2
    first, second = images[:half], images[count - half :]
    overlap = 2 * half - count
    return tf.nest.map_structure(lambda a, b: tf.concat([a, b[overlap:]], axis=0), function(first), function(second))
