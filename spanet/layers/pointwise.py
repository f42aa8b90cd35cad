"""A 1x1 convolution computed as one matrix product: the same layer, weights and output, faster on the CPU.

On this kind of CPU, oneDNN's convolution kernels for 1x1 filters cost up to three
times a plain ``MatMul`` over the flattened positions, most of all in the backward
pass and where the feature map is 1x1 (the attention transform, the embedding
head). :class:`PointwiseConv2D` keeps ``Conv2D``'s kernel shape ``(1, 1, in, out)``,
variable names and config, so parameter counts, checkpoints and ``.keras`` files
are those of a ``Conv2D``; only the arithmetic's order of operations changes.
"""

from __future__ import annotations

from typing import Any, Optional

from spanet._keras import keras, register, tf


def matmul_over_positions(inputs: tf.Tensor, matrix: tf.Tensor, bias: Optional[tf.Tensor] = None) -> tf.Tensor:
    """``inputs`` (B, H, W, in) times ``matrix`` (in, out) at every position, plus ``bias``: (B, H, W, out)."""
    channels, filters = int(matrix.shape[0]), int(matrix.shape[1])
    outputs = tf.matmul(tf.reshape(inputs, [-1, channels]), matrix)
    if bias is not None:
        outputs = tf.nn.bias_add(outputs, bias)
    height, width = inputs.shape[1], inputs.shape[2]
    if height is not None and width is not None:
        return tf.reshape(outputs, [-1, height, width, filters])
    return tf.reshape(outputs, tf.concat([tf.shape(inputs)[:-1], [filters]], axis=0))


def pointwise_or_conv2d(fused: bool, kernel_size: int = 1, strides: int = 1) -> type:
    """The convolution class to build: :class:`PointwiseConv2D` where it applies (fused, 1x1, stride 1),
    else ``Conv2D``."""
    return PointwiseConv2D if fused and kernel_size == 1 and strides == 1 else keras.layers.Conv2D


def _as_pair(value: Any) -> Any:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


@register
class PointwiseConv2D(keras.layers.Conv2D):
    """``Conv2D(filters, 1)`` with stride 1, evaluated as ``reshape -> matmul -> reshape``.

    Accepts ``Conv2D``'s arguments; ``kernel_size``, ``strides`` and
    ``dilation_rate`` must be 1 (they are in the config so that a ``Conv2D``
    config loads unchanged).
    """

    def __init__(self, filters: int, kernel_size: Any = 1, strides: Any = 1, **kwargs):
        for name, value in (
            ("kernel_size", kernel_size),
            ("strides", strides),
            ("dilation_rate", kwargs.get("dilation_rate", 1)),
        ):
            if _as_pair(value) != (1, 1):
                raise ValueError(f"PointwiseConv2D needs {name}=1; got {value!r}")
        if kwargs.get("groups", 1) != 1:
            raise ValueError(f"PointwiseConv2D needs groups=1; got {kwargs['groups']!r}")
        if kwargs.get("data_format") not in (None, "channels_last"):
            raise ValueError(f"PointwiseConv2D needs data_format='channels_last'; got {kwargs['data_format']!r}")
        super().__init__(filters, 1, strides=1, **kwargs)

    def call(self, inputs):
        return self._forward(inputs)

    @tf.autograph.experimental.do_not_convert
    def _forward(self, inputs):
        matrix = tf.reshape(self.kernel, [int(inputs.shape[-1]), self.filters])
        outputs = matmul_over_positions(inputs, matrix, self.bias if self.use_bias else None)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs
