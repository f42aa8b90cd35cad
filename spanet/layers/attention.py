"""Self-attention (paper section III-B): a global-context gate over channels.

1. context modelling: a 1x1 convolution gives one logit per position, a softmax over
   all H*W positions weights them, and the weighted sum of the feature map is one
   context vector per image (the long-range part);
2. transform: 1x1 convolution down to C / reduction, a normalisation (LayerNorm in
   the paper), ReLU, 1x1 convolution back to C;
3. fusion: a hard-sigmoid gate multiplies the input channel-wise.

``reference_softmax=True`` reproduces the published code, whose softmax runs over a
single channel: the weights are all 1, nothing is pooled over positions, and the
transform runs on every position separately (costly, and not what the paper says).
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

from spanet._keras import keras, register, tf
from spanet.layers.parts import channel_counts, pointwise_of_parts, split_like
from spanet.layers.pointwise import PointwiseConv2D, pointwise_or_conv2d
from spanet.validation import check_choice, check_positive_int

#: Normalisations the attention transform can use (the paper's ablation).
NORMALIZATIONS = ("layer", "batch", "group")

#: How the transformed context meets the input: SP&A's hard-sigmoid gate, or GCNet's addition.
FUSIONS = ("gate", "add")


def hard_sigmoid(x: tf.Tensor) -> tf.Tensor:
    """``relu6(x + 3) / 6``: the piecewise-linear sigmoid of MobileNetV3 (and Keras 3)."""
    return tf.nn.relu6(x + 3.0) * (1.0 / 6.0)


def _group_count(channels: int, preferred: int = 8) -> int:
    """The largest number of groups <= ``preferred`` that divides ``channels``."""
    return max(g for g in range(1, min(preferred, channels) + 1) if channels % g == 0)


def make_normalization(kind: str, channels: int, name: str) -> keras.layers.Layer:
    """The normalisation layer of the attention transform: layer, batch or group norm."""
    check_choice("norm", kind, NORMALIZATIONS)
    if kind == "layer":
        return keras.layers.LayerNormalization(axis=-1, epsilon=1e-5, name=name)
    if kind == "batch":
        return keras.layers.BatchNormalization(axis=-1, name=name)
    return keras.layers.GroupNormalization(groups=_group_count(channels), axis=-1, epsilon=1e-5, name=name)


@register
class SelfAttention(keras.layers.Layer):
    """Global-context channel attention with a softmax over all positions.

    Args:
      reduction: the transform's bottleneck is ``channels // reduction`` wide.
      norm: ``"layer"`` (the paper's choice), ``"batch"`` or ``"group"``.
      reference_softmax: reproduce the published code's single-channel softmax.
      fusion: ``"gate"`` multiplies the input by a hard-sigmoid gate (SP&A-Net);
        ``"add"`` adds the transformed context to every position (GCNet).
      fused: compute the 1x1 convolutions as matrix products (same weights, faster
        on the CPU); False uses ``Conv2D`` as the published code does.
    """

    def __init__(
        self,
        reduction: int = 4,
        norm: str = "layer",
        reference_softmax: bool = False,
        fusion: str = "gate",
        fused: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.reduction = check_positive_int("reduction", reduction)
        self.norm = check_choice("norm", norm, NORMALIZATIONS)
        self.reference_softmax = bool(reference_softmax)
        self.fusion = check_choice("fusion", fusion, FUSIONS)
        self.fused = bool(fused)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        hidden = max(1, channels // self.reduction)
        conv = pointwise_or_conv2d(self.fused)
        self.context = conv(1, 1, use_bias=False, name="context")
        self.down = conv(hidden, 1, use_bias=False, name="transform_down")
        self.normalization = make_normalization(self.norm, hidden, name="transform_norm")
        self.up = conv(channels, 1, use_bias=True, name="transform_up")
        self.context.build(input_shape)
        pooled_shape = (None, 1, 1, channels)
        self.down.build(pooled_shape)
        self.normalization.build((None, 1, 1, hidden))
        self.up.build((None, 1, 1, hidden))
        super().build(input_shape)

    def _pooled_context(self, inputs: tf.Tensor) -> tf.Tensor:
        """Softmax over the H*W positions, then the attention-weighted sum: shape (B, 1, 1, C).

        The logits are laid out (B, 1, H*W), so the softmax runs over the last axis (over any other
        axis TensorFlow transposes there and back) and the weighted sum is a plain batched product.
        """
        height, width, channels = inputs.shape[1], inputs.shape[2], inputs.shape[-1]
        if height is not None and width is not None:
            positions = int(height) * int(width)  # static: no shape ops in the graph
        else:
            positions = tf.shape(inputs)[1] * tf.shape(inputs)[2]
        weights = tf.nn.softmax(tf.reshape(self.context(inputs), [-1, 1, positions]))
        pooled = tf.matmul(weights, tf.reshape(inputs, [-1, positions, channels]))  # (B, 1, C)
        return tf.reshape(pooled, [-1, 1, 1, channels])

    def call(self, inputs, training=None):
        return self._forward(inputs, training)

    def accepts_parts(self) -> bool:
        """Whether :meth:`call_on_parts` applies: the paper's softmax over positions, 1x1 convolutions as
        matrix products."""
        return not self.reference_softmax and isinstance(self.context, PointwiseConv2D)

    @tf.autograph.experimental.do_not_convert
    def call_on_parts(self, parts: Sequence[tf.Tensor], training=None) -> List[tf.Tensor]:
        """The module on ``concat(parts)`` as the output's parts: the context logits are a sum of one
        product per part, each part is pooled and gated on its own (``spanet.layers.parts``)."""
        positions = int(parts[0].shape[1]) * int(parts[0].shape[2])
        with tf.name_scope(self.name):
            logits = pointwise_of_parts(self.context, parts)
            weights = tf.nn.softmax(tf.reshape(logits, [-1, 1, positions]))
            pooled = [tf.matmul(weights, tf.reshape(part, [-1, positions, int(part.shape[-1])])) for part in parts]
            context = tf.reshape(tf.concat(pooled, axis=-1), [-1, 1, 1, sum(channel_counts(parts))])
            transformed = self._transform(context, training)
            if self.fusion == "add":
                return [part + share for part, share in zip(parts, split_like(transformed, parts))]
            return [part * gate for part, gate in zip(parts, split_like(hard_sigmoid(transformed), parts))]

    # Static Python control flow only: autograph conversion would just slow model building.
    @tf.autograph.experimental.do_not_convert
    def _forward(self, inputs, training):
        if self.reference_softmax:
            weights = tf.nn.softmax(self.context(inputs), axis=-1)  # one channel: always 1
            context = inputs * weights
        else:
            context = self._pooled_context(inputs)
        transformed = self._transform(context, training)
        if self.fusion == "add":
            return inputs + transformed
        return inputs * hard_sigmoid(transformed)

    def _transform(self, context: tf.Tensor, training) -> tf.Tensor:
        """Down, normalisation, ReLU, up: the pooled context's transform."""
        hidden = self.down(context)
        hidden = self.normalization(hidden, training=training)
        return self.up(tf.nn.relu(hidden))

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(
            reduction=self.reduction,
            norm=self.norm,
            reference_softmax=self.reference_softmax,
            fusion=self.fusion,
            fused=self.fused,
        )
        return config
