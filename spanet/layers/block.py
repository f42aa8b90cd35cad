"""The SP&A block (paper section III-C): an inverted bottleneck of self-proliferation and attention.

main path: proliferate up to ``expansion`` channels -> BN -> ReLU
           -> (stride > 1: depthwise conv with the stride -> BN -> ReLU)
           -> self-attention (optional) -> proliferate down to ``filters`` -> BN
shortcut:  depthwise conv (with the stride) -> BN -> 1x1 conv to ``filters`` -> BN
output = main + shortcut
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from spanet._keras import keras, register, tf
from spanet.layers.attention import NORMALIZATIONS, SelfAttention
from spanet.layers.depthwise import SmallMapDepthwiseConv2D
from spanet.layers.folding import depthwise_with_batchnorm, is_inference, pointwise_with_batchnorm
from spanet.layers.parts import batchnorm_parts, depthwise_parts, supports_parts
from spanet.layers.pointwise import pointwise_or_conv2d
from spanet.layers.proliferation import SelfProliferation, concat_channels, proliferation_multiplier
from spanet.validation import check_choice, check_positive_int, check_ratio

#: BatchNormalization settings used throughout the network.
# Keras uses 0.99; 0.9 lets the statistics settle within a few dozen steps on small data sets.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-3


def _batch_norm(name: str) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


@register
class SPABlock(keras.layers.Layer):
    """One self-proliferation-and-attention block.

    Args:
      filters: output channels.
      expansion: channels of the high-dimensional middle of the block.
      kernel_size: kernel of the block's depthwise convolutions (shortcut and strided).
      strides: spatial stride (1 or 2).
      ratio: composition ratio r of both self-proliferation modules.
      attention: whether the block has self-attention.
      attention_reduction: bottleneck reduction of the attention transform.
      norm: normalisation inside attention (layer / batch / group).
      reference_softmax: the published code's single-channel attention softmax.
      depth_multiplier: depth multiplier of the block's own depthwise convolutions;
        None follows the published code, ``ceil(1/r) - 1`` (1 at r = 0.5), which is why
        the parameter count grows as r shrinks (steeply: attention then sees
        ``expansion * multiplier`` channels). 1 keeps the block's width fixed for any r.
      fused: the CPU fast paths, with the same weights and outputs (to float
        rounding): 1x1 convolutions as matrix products, depthwise convolutions that
        train faster onto maps of at most four positions, in training the block's middle kept as
        the expansion's two channel parts (``spanet.layers.parts``), and in inference BatchNorm folded
        into the depthwise or 1x1 convolution or the self-proliferation module before it. False runs
        every layer separately, as the published code does (for comparisons).
    """

    def __init__(
        self,
        filters: int,
        expansion: int,
        kernel_size: int = 3,
        strides: int = 1,
        ratio: float = 0.5,
        attention: bool = True,
        attention_reduction: int = 4,
        norm: str = "layer",
        reference_softmax: bool = False,
        depth_multiplier: Optional[int] = None,
        fused: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)
        self.expansion = check_positive_int("expansion", expansion)
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        self.strides = check_positive_int("strides", strides)
        self.ratio = check_ratio("ratio", ratio)
        self.attention = bool(attention)
        self.attention_reduction = check_positive_int("attention_reduction", attention_reduction)
        self.norm = check_choice("norm", norm, NORMALIZATIONS)
        self.reference_softmax = bool(reference_softmax)
        self.depth_multiplier = (
            None if depth_multiplier is None else check_positive_int("depth_multiplier", depth_multiplier)
        )
        self.fused = bool(fused)
        multiplier = self.depth_multiplier or proliferation_multiplier(self.ratio)
        depthwise = SmallMapDepthwiseConv2D if self.fused else keras.layers.DepthwiseConv2D

        self.shortcut_dw = depthwise(
            self.kernel_size,
            self.strides,
            padding="same",
            depth_multiplier=multiplier,
            use_bias=False,
            name="shortcut_dw",
        )
        self.shortcut_dw_bn = _batch_norm("shortcut_dw_bn")
        self.shortcut_proj = pointwise_or_conv2d(self.fused)(self.filters, 1, use_bias=False, name="shortcut_proj")
        self.shortcut_proj_bn = _batch_norm("shortcut_proj_bn")

        self.expand = SelfProliferation(self.expansion, self.ratio, fused=self.fused, name="expand")
        self.expand_bn = _batch_norm("expand_bn")
        self.strided_dw = None
        if self.strides > 1:
            self.strided_dw = depthwise(
                self.kernel_size,
                self.strides,
                padding="same",
                depth_multiplier=multiplier,
                use_bias=False,
                name="strided_dw",
            )
            self.strided_dw_bn = _batch_norm("strided_dw_bn")
        self.self_attention = None
        if self.attention:
            self.self_attention = SelfAttention(
                self.attention_reduction, self.norm, self.reference_softmax, fused=self.fused, name="attention"
            )
        self.project = SelfProliferation(self.filters, self.ratio, fused=self.fused, name="project")
        self.project_bn = _batch_norm("project_bn")

    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        self.shortcut_dw.build(input_shape)
        shape = self.shortcut_dw.compute_output_shape(input_shape)
        self.shortcut_dw_bn.build(shape)
        self.shortcut_proj.build(shape)
        self.shortcut_proj_bn.build(self.shortcut_proj.compute_output_shape(shape))

        self.expand.build(input_shape)
        shape = self.expand.compute_output_shape(input_shape)
        self.expand_bn.build(shape)
        if self.strided_dw is not None:
            self.strided_dw.build(shape)
            shape = self.strided_dw.compute_output_shape(shape)
            self.strided_dw_bn.build(shape)
        if self.self_attention is not None:
            self.self_attention.build(shape)
        self.project.build(shape)
        self.project_bn.build(self.project.compute_output_shape(shape))
        super().build(input_shape)

    # Static Python control flow only: autograph conversion would just slow model building.
    @tf.autograph.experimental.do_not_convert
    def call(self, inputs, training=None):
        if self._trains_on_parts(training):
            return self._train_on_parts(inputs)
        return self._forward(inputs, training)

    def _trains_on_parts(self, training) -> bool:
        """Whether this call trains with the block's middle kept as channel parts (``spanet.layers.parts``)."""
        return (
            self.fused
            and training is True
            and self.project.accepts_parts()
            and (self.self_attention is None or self.self_attention.accepts_parts())
            and supports_parts()
        )

    # Static Python control flow only: autograph conversion would just slow model building.
    @tf.autograph.experimental.do_not_convert
    def _train_on_parts(self, inputs):
        """Training, the same function as :meth:`_forward`: the expansion's intrinsic maps and cheap copies
        go through BatchNorm, the strided convolution and attention side by side, joined only by the
        projection's 1x1 product, whose own parts are joined after their BatchNorm."""
        shortcut = self.shortcut_dw_bn(self.shortcut_dw(inputs, training=True), training=True)
        shortcut = self.shortcut_proj_bn(self.shortcut_proj(shortcut), training=True)
        parts = self.expand.batchnormed_parts(inputs, self.expand_bn, relu=True)
        if self.strided_dw is not None:
            parts = batchnorm_parts(self.strided_dw_bn, depthwise_parts(self.strided_dw, parts, True), relu=True)
        if self.self_attention is not None:
            parts = self.self_attention.call_on_parts(parts, training=True)
        projected = self.project.batchnormed_parts(parts, self.project_bn)
        return (concat_channels(*projected) if len(projected) == 2 else projected[0]) + shortcut

    # Static Python control flow only: autograph conversion would just slow model building.
    @tf.autograph.experimental.do_not_convert
    def _forward(self, inputs, training):
        fold = self.fused and is_inference(training)
        if fold:
            # BatchNorm folded into the convolution before it (see spanet.layers.folding).
            shortcut = depthwise_with_batchnorm(self.shortcut_dw, self.shortcut_dw_bn, inputs)
            shortcut = pointwise_with_batchnorm(self.shortcut_proj, self.shortcut_proj_bn, shortcut)
        else:
            shortcut = self.shortcut_dw_bn(self.shortcut_dw(inputs, training=training), training=training)
            shortcut = self.shortcut_proj_bn(self.shortcut_proj(shortcut), training=training)

        # In the fused inference each BatchNorm after a proliferation module is folded into it.
        x = self.expand(inputs, training=training, batchnorm=self.expand_bn, relu=True)
        if self.strided_dw is not None:
            if fold:
                x = tf.nn.relu(depthwise_with_batchnorm(self.strided_dw, self.strided_dw_bn, x))
            else:
                x = tf.nn.relu(self.strided_dw_bn(self.strided_dw(x, training=training), training=training))
        if self.self_attention is not None:
            x = self.self_attention(x, training=training)
        x = self.project(x, training=training, batchnorm=self.project_bn)
        return x + shortcut

    def compute_output_shape(self, input_shape):
        shape = self.shortcut_dw.compute_output_shape(tf.TensorShape(input_shape))
        return shape[:-1].concatenate([self.filters])

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(
            filters=self.filters,
            expansion=self.expansion,
            kernel_size=self.kernel_size,
            strides=self.strides,
            ratio=self.ratio,
            attention=self.attention,
            attention_reduction=self.attention_reduction,
            norm=self.norm,
            reference_softmax=self.reference_softmax,
            depth_multiplier=self.depth_multiplier,
            fused=self.fused,
        )
        return config
