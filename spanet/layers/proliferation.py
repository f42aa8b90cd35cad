"""Self-proliferation (paper section III-A): most feature maps made cheaply from a few.

An ordinary convolution makes ``ceil(filters * r)`` "intrinsic" maps; a depthwise
("cheap", linear) convolution of those maps proliferates the remaining ones, and the
two are concatenated. ``r = 1`` is a plain convolution.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List

from spanet._keras import keras, register, tf
from spanet.layers.depthwise import SmallMapDepthwiseConv2D
from spanet.layers.folding import (
    batchnorm_scale_shift,
    depthwise_with_scale_shift,
    is_inference,
    scale_and_shift,
    shift_with_conv_bias,
)
from spanet.layers.parts import batchnorm_parts, pointwise_of_parts
from spanet.layers.pointwise import PointwiseConv2D, pointwise_or_conv2d
from spanet.validation import check_ratio, check_positive_int


def intrinsic_channels(filters: int, ratio: float) -> int:
    """Channels the ordinary convolution makes: ``ceil(filters * r)``, at least one."""
    # Rounding first keeps r = 0.13 * 100 from becoming 13.000000000000002 -> 14.
    return max(1, min(filters, math.ceil(round(filters * ratio, 9))))


def proliferation_multiplier(ratio: float) -> int:
    """Depth multiplier of the cheap convolution, ``ceil(1 / r) - 1`` (at least one)."""
    return max(1, math.ceil(round(1.0 / ratio, 9)) - 1)


@tf.custom_gradient
def concat_channels(first: tf.Tensor, second: tf.Tensor):
    """``concat([first, second], -1)`` whose gradient is one split, not TF's offset + two slices."""
    sizes = [int(first.shape[-1]), int(second.shape[-1])]

    def gradient(upstream):
        return tf.split(upstream, sizes, axis=-1)

    return tf.concat([first, second], axis=-1), gradient


@register
class SelfProliferation(keras.layers.Layer):
    """Makes ``filters`` maps from ``ceil(filters * ratio)`` intrinsic ones plus cheap copies.

    The cheap depthwise convolution runs only on the intrinsic channels whose copies
    survive the cut to ``filters`` channels, so no work or weight is spent on
    channels that are sliced away. At ``ratio = 0.5`` and even ``filters`` this is
    exactly the published module (same weights, same output).

    Args:
      filters: output channels.
      ratio: composition ratio r in (0, 1]; r = 1 gives a plain convolution.
      kernel_size: kernel of the intrinsic (ordinary) convolution.
      cheap_kernel_size: kernel of the cheap depthwise convolution.
      strides: stride of the intrinsic convolution.
      use_bias: whether both convolutions carry a bias.
      fused: the CPU fast paths, same weights and outputs: a 1x1, stride-1
        intrinsic convolution as one matrix product (:class:`PointwiseConv2D`), a
        cheap convolution that trains faster onto maps of at most four positions, and a one-op concat
        gradient in training; False computes layer by layer as the published code does.
    """

    def __init__(
        self,
        filters: int,
        ratio: float = 0.5,
        kernel_size: int = 1,
        cheap_kernel_size: int = 3,
        strides: int = 1,
        use_bias: bool = False,
        kernel_initializer: Any = "glorot_uniform",
        kernel_regularizer: Any = None,
        fused: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)
        self.ratio = check_ratio("ratio", ratio)
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        self.cheap_kernel_size = check_positive_int("cheap_kernel_size", cheap_kernel_size)
        self.strides = check_positive_int("strides", strides)
        self.use_bias = bool(use_bias)
        self.fused = bool(fused)
        # Serialised once, re-created per convolution: a shared initializer instance
        # would give both convolutions the same (unseeded) starting weights.
        self.kernel_initializer = keras.initializers.serialize(keras.initializers.get(kernel_initializer))
        self.kernel_regularizer = keras.regularizers.serialize(keras.regularizers.get(kernel_regularizer))

        self.num_intrinsic = intrinsic_channels(self.filters, self.ratio)
        self.num_proliferated = self.filters - self.num_intrinsic
        self.multiplier = proliferation_multiplier(self.ratio)
        # Only the first ceil(P / m) intrinsic maps feed the P proliferated channels kept.
        self.num_sources = math.ceil(self.num_proliferated / self.multiplier)

        self.intrinsic = pointwise_or_conv2d(self.fused, self.kernel_size, self.strides)(
            self.num_intrinsic,
            self.kernel_size,
            strides=self.strides,
            padding="same",
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.get(self.kernel_initializer),
            kernel_regularizer=keras.regularizers.get(self.kernel_regularizer),
            name="intrinsic",
        )
        self.cheap = None
        if self.num_proliferated > 0:
            self.cheap = (SmallMapDepthwiseConv2D if self.fused else keras.layers.DepthwiseConv2D)(
                self.cheap_kernel_size,
                padding="same",
                depth_multiplier=self.multiplier,
                use_bias=self.use_bias,
                depthwise_initializer=keras.initializers.get(self.kernel_initializer),
                depthwise_regularizer=keras.regularizers.get(self.kernel_regularizer),
                name="cheap",
            )

    def build(self, input_shape):
        self.intrinsic.build(input_shape)
        if self.cheap is not None:
            intrinsic_shape = self.intrinsic.compute_output_shape(input_shape)
            self.cheap.build(intrinsic_shape[:-1].concatenate([self.num_sources]))
        super().build(input_shape)

    def call(self, inputs, training=None, batchnorm=None, relu=False):
        """The module's maps; with ``batchnorm`` (a BatchNormalization over them), ``relu(batchnorm(maps))``
        (or without the ReLU), the normalisation folded into the cheap convolution in the fused inference."""
        if batchnorm is None:
            return self._forward(inputs, training)
        if self.fused and is_inference(training):
            return self._forward_with_batchnorm(inputs, batchnorm, relu)
        outputs = batchnorm(self._forward(inputs, training), training=training)
        return tf.nn.relu(outputs) if relu else outputs

    @tf.autograph.experimental.do_not_convert
    def _forward_with_batchnorm(self, inputs, batchnorm, relu: bool):
        """Inference of ``relu(batchnorm(concat(intrinsic, cheap(intrinsic))))`` without a BatchNorm kernel.

        BatchNorm is per channel, so each part of the concat takes its own share: the proliferated maps in
        the cheap depthwise convolution's kernel and bias (one fused op with the ReLU), the intrinsic maps,
        which the cheap convolution reads unnormalised, as a multiply and a bias add.
        """
        activation = tf.nn.relu if relu else tf.identity
        intrinsic = self.intrinsic(inputs)
        with tf.name_scope(batchnorm.name):
            scale, shift = batchnorm_scale_shift(batchnorm)
            if self.cheap is None:
                return activation(scale_and_shift(intrinsic, scale, shift))
            first = activation(scale_and_shift(intrinsic, scale[: self.num_intrinsic], shift[: self.num_intrinsic]))
        # The cheap convolution makes num_sources * multiplier maps, of which the first num_proliferated are kept.
        padding = [[0, self.num_sources * self.multiplier - self.num_proliferated]]
        cheap_scale = tf.pad(scale[self.num_intrinsic :], padding, constant_values=1.0)
        cheap_shift = shift_with_conv_bias(self.cheap, cheap_scale, tf.pad(shift[self.num_intrinsic :], padding))
        with tf.name_scope(self.cheap.name):
            made = depthwise_with_scale_shift(self.cheap, cheap_scale, cheap_shift, self._sources(intrinsic))
        return tf.concat([first, self._kept(activation(made))], axis=-1)

    def _sources(self, intrinsic: tf.Tensor) -> tf.Tensor:
        """The intrinsic maps the cheap convolution reads: those whose copies survive the cut."""
        return intrinsic[..., : self.num_sources] if self.num_sources < self.num_intrinsic else intrinsic

    def _kept(self, proliferated: tf.Tensor) -> tf.Tensor:
        """The cheap convolution's maps cut to the ``num_proliferated`` that the module outputs."""
        if self.num_sources * self.multiplier > self.num_proliferated:
            return proliferated[..., : self.num_proliferated]
        return proliferated

    @tf.autograph.experimental.do_not_convert
    def batchnormed_parts(self, inputs, batchnorm, relu: bool = False) -> List[tf.Tensor]:
        """Training: ``relu(batchnorm(self(inputs)))`` (or without the ReLU) as its channel parts, the
        intrinsic maps and their cheap copies, never concatenated (``spanet.layers.parts``). ``inputs``
        may be parts too (with :meth:`accepts_parts`): the intrinsic 1x1 convolution of their concat is
        the sum of one product per part, so they are never joined either."""
        if isinstance(inputs, (list, tuple)):
            intrinsic = pointwise_of_parts(self.intrinsic, inputs)
        else:
            intrinsic = self.intrinsic(inputs)
        if self.cheap is None:
            return batchnorm_parts(batchnorm, [intrinsic], relu)
        proliferated = self._kept(self.cheap(self._sources(intrinsic), training=True))
        return batchnorm_parts(batchnorm, [intrinsic, proliferated], relu)

    def accepts_parts(self) -> bool:
        """Whether :meth:`batchnormed_parts` takes parts: the intrinsic convolution is a 1x1 matrix product."""
        return isinstance(self.intrinsic, PointwiseConv2D)

    @tf.autograph.experimental.do_not_convert
    def _forward(self, inputs, training):
        return self._from_intrinsic(self.intrinsic(inputs), training)

    def _from_intrinsic(self, intrinsic, training):
        if self.cheap is None:
            return intrinsic
        proliferated = self._kept(self.cheap(self._sources(intrinsic), training=training))
        if self.fused and not is_inference(training):
            return concat_channels(intrinsic, proliferated)
        # Inference: no gradient to speed up, and each custom gradient is one more function in every
        # traced graph and SavedModel (96 of a served SP&A-Net's 124, each loaded one by one).
        return tf.concat([intrinsic, proliferated], axis=-1)

    def compute_output_shape(self, input_shape):
        shape = self.intrinsic.compute_output_shape(input_shape)
        return shape[:-1].concatenate([self.filters])

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(
            filters=self.filters,
            ratio=self.ratio,
            kernel_size=self.kernel_size,
            cheap_kernel_size=self.cheap_kernel_size,
            strides=self.strides,
            use_bias=self.use_bias,
            kernel_initializer=self.kernel_initializer,
            kernel_regularizer=self.kernel_regularizer,
            fused=self.fused,
        )
        return config
