"""A depthwise convolution whose training pass onto a map of at most four positions is a batched matrix product.

SP&A-Net's last blocks run on 2x2 maps with 3x3 and 5x5 kernels, and block 12's
strided convolution maps 4x4 onto 2x2 with a 5x5 kernel. oneDNN's depthwise
backward kernels cost 2-4x more there than the arithmetic suggests. On so few
positions the convolution is, per channel, a small dense map from input to output
positions whose entries are kernel taps (``out[o, c] = sum_i x[i, c] * K[tap(o, i), c]``):
one batched matrix product over channels, ``(C, B, I) x (C, I, O)``, whose backward
pass is two more. Measured on 2 cores, batch 64, forward and backward: 4x4 -> 2x2
with 672 channels 4.5 -> 2.8 ms, 2x2 with 960 channels 5.2 -> 1.4 ms (a broadcast
multiply and sum, the form before, took 2.3 ms). Inference keeps the native kernel,
which is faster there. Weights, config and outputs (to float rounding) are those of
``DepthwiseConv2D``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Tuple

import numpy as np

from spanet._keras import keras, register, tf

#: Training uses the matrix form where the output has at most this many positions ...
MAX_DENSE_OUTPUT_POSITIONS = 4
#: ... and the input at most this many (a 4x4 map with stride 2).
MAX_DENSE_INPUT_POSITIONS = 16


@lru_cache(maxsize=None)
def tap_table(height: int, width: int, kernel: int, stride: int) -> Tuple[np.ndarray, int, int]:
    """For 'same' padding: the kernel tap linking each (output, input) position pair, ``kernel**2`` for none."""
    out_h, out_w = -(-height // stride), -(-width // stride)
    top = max((out_h - 1) * stride + kernel - height, 0) // 2
    left = max((out_w - 1) * stride + kernel - width, 0) // 2
    table = np.full((out_h * out_w, height * width), kernel * kernel, np.int32)
    for i in range(out_h):
        for j in range(out_w):
            for p in range(height):
                for q in range(width):
                    a, b = p - (i * stride - top), q - (j * stride - left)
                    if 0 <= a < kernel and 0 <= b < kernel:
                        table[i * out_w + j, p * width + q] = a * kernel + b
    table.setflags(write=False)
    return table, out_h, out_w


def uses_matrix_form(height: int, width: int, stride: int) -> bool:
    """Whether a training pass over a ``height`` x ``width`` map with ``stride`` takes the matrix form."""
    out_positions = -(-height // stride) * -(-width // stride)
    return out_positions <= MAX_DENSE_OUTPUT_POSITIONS and height * width <= MAX_DENSE_INPUT_POSITIONS


@register
class SmallMapDepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """``DepthwiseConv2D`` ('same' padding) that trains faster where its output has at most four positions."""

    def call(self, inputs, training=None):
        return self.convolve(inputs, training)

    # Static Python control flow only: autograph conversion would just slow model building.
    @tf.autograph.experimental.do_not_convert
    def convolve(self, inputs, training=None, kernel=None, bias=None):
        """The layer on ``inputs``; with ``kernel`` and ``bias``, the share of them that belongs to the input
        channels ``inputs`` holds (a channel part, ``spanet.layers.parts``)."""
        height, width = inputs.shape[1], inputs.shape[2]
        dense = (
            training is True
            and height is not None
            and width is not None
            and self.padding == "same"
            and self.kernel_size[0] == self.kernel_size[1]
            and self.strides[0] == self.strides[1]
            and uses_matrix_form(int(height), int(width), self.strides[0])
            and tuple(self.dilation_rate) == (1, 1)
            and self.data_format == "channels_last"
        )
        if kernel is None:
            if not dense:
                return super().call(inputs)
            kernel, bias = self.depthwise_kernel, self.bias if self.use_bias else None
        elif self.data_format != "channels_last":
            raise ValueError("a depthwise convolution of channel parts needs data_format='channels_last'")
        if dense:
            outputs = self._matrix_over_positions(inputs, int(height), int(width), kernel)
        else:
            outputs = tf.nn.depthwise_conv2d(
                inputs,
                kernel,
                strides=(1, *self.strides, 1),
                padding=self.padding.upper(),
                dilations=self.dilation_rate,
            )
        if bias is not None:
            outputs = tf.nn.bias_add(outputs, bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    @tf.autograph.experimental.do_not_convert
    def _matrix_over_positions(self, inputs, height: int, width: int, kernel: tf.Tensor):
        kernel_size, stride = self.kernel_size[0], self.strides[0]
        channels, multiplier = int(inputs.shape[-1]), self.depth_multiplier
        table, out_h, out_w = tap_table(height, width, kernel_size, stride)
        taps = tf.reshape(kernel, [kernel_size * kernel_size, channels * multiplier])
        taps = tf.concat([taps, tf.zeros_like(taps[:1])], axis=0)  # row kernel**2: no tap
        # (C * m, in positions, out positions): one small matrix per output channel.
        matrices = tf.transpose(tf.gather(taps, tf.constant(table.T)), [2, 0, 1])
        positions = tf.reshape(inputs, [-1, height * width, channels])
        if multiplier > 1:  # output channel c * m + j reads input channel c
            positions = tf.repeat(positions, multiplier, axis=-1)
        outputs = tf.matmul(tf.transpose(positions, [2, 0, 1]), matrices)  # (C * m, B, out positions)
        return tf.reshape(tf.transpose(outputs, [1, 2, 0]), [-1, out_h, out_w, channels * multiplier])
