"""SP&A-Net (paper section III-D): a stem, 16 SP&A blocks and a Conv1x1 head, built functionally.

The defaults are the published network: r = 0.5, attention in every block, LayerNorm
inside attention, the "Conv1x1 flattening" head. At width 1.0 it has exactly the
published code's parameter count (5,125,232 for 10 classes at 32x32x3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

from spanet._keras import keras, register, tf
from spanet.halves import call_in_halves
from spanet.layers.attention import NORMALIZATIONS
from spanet.layers.block import BN_EPSILON, BN_MOMENTUM, SPABlock
from spanet.layers.heads import CosineClassifier
from spanet.layers.pointwise import pointwise_or_conv2d
from spanet.validation import check_choice, check_positive, check_positive_int, check_ratio

#: Heads of the ablation: the paper's Conv1x1 flattening, or global average pooling alone.
HEADS = ("conv1x1", "gap")


@dataclass(frozen=True)
class BlockSpec:
    """One row of the network table: depthwise kernel, stride, expansion and output channels."""

    kernel_size: int
    strides: int
    expansion: int
    filters: int


#: The 16 blocks of the reference network (spanet.md table).
REFERENCE_BLOCKS: Tuple[BlockSpec, ...] = (
    BlockSpec(3, 1, 16, 16),
    BlockSpec(3, 2, 48, 24),
    BlockSpec(3, 1, 72, 24),
    BlockSpec(5, 2, 72, 40),
    BlockSpec(5, 1, 120, 40),
    BlockSpec(3, 2, 240, 80),
    BlockSpec(3, 1, 200, 80),
    BlockSpec(3, 1, 184, 80),
    BlockSpec(3, 1, 184, 80),
    BlockSpec(3, 1, 480, 112),
    BlockSpec(3, 1, 672, 112),
    BlockSpec(5, 2, 672, 160),
    BlockSpec(5, 1, 960, 160),
    BlockSpec(5, 1, 960, 160),
    BlockSpec(5, 1, 960, 160),
    BlockSpec(5, 1, 960, 160),
)
STEM_FILTERS = 16
HEAD_FILTERS = 960
EMBEDDING_FILTERS = 1280


def scale_channels(channels: int, width: float, divisor: int = 8) -> int:
    """Channels at a width multiplier, rounded to a multiple of ``divisor`` (MobileNet's rule)."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:  # never round down by more than 10%
        rounded += divisor
    return rounded


def _attention_flags(attention: Union[bool, Sequence[bool]], count: int) -> Tuple[bool, ...]:
    if isinstance(attention, bool):
        return (attention,) * count
    flags = tuple(bool(a) for a in attention)
    if len(flags) != count:
        raise ValueError(f"attention must be a bool or a sequence of {count} bools (one per block); got {len(flags)}")
    return flags


def _conv_bn_relu(x, filters: int, kernel_size: int, strides: int, name: str, fused: bool = True):
    x = pointwise_or_conv2d(fused, kernel_size, strides)(
        filters, kernel_size, strides, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


@register
class SPANetModel(keras.Model):
    """The functional SP&A-Net whose ``predict`` runs each batch as two halves side by side.

    Same outputs as one pass (``spanet.halves``); on a 2-core CPU both cores then work on the
    small late maps. Training, evaluation and direct calls are the plain functional model's.
    """

    def predict_step(self, data):
        images, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        if not isinstance(images, tf.Tensor):  # a dict or list of inputs: not split
            return super().predict_step(data)
        return call_in_halves(lambda half: self(half, training=False), images)


def check_input_shape(input_shape: Sequence[int]) -> Tuple[int, int, int]:
    """An image input is (height, width, channels) with positive sizes."""
    shape = tuple(input_shape)
    if len(shape) != 3 or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise ValueError(f"input_shape must be (height, width, channels) of positive integers; got {input_shape!r}")
    return shape  # type: ignore[return-value]


def build_spanet(
    num_classes: int = 9,
    input_shape: Sequence[int] = (64, 64, 1),
    width: float = 1.0,
    r: float = 0.5,
    attention: Union[bool, Sequence[bool]] = True,
    norm: str = "layer",
    head: str = "conv1x1",
    embedding_output: bool = False,
    reference_attention: bool = False,
    attention_reduction: int = 4,
    block_depth_multiplier: Optional[int] = None,
    fused: bool = True,
    blocks: Sequence[BlockSpec] = REFERENCE_BLOCKS,
    name: Optional[str] = None,
) -> keras.Model:
    """Builds SP&A-Net as a functional Keras model whose output is cosine logits.

    Args:
      num_classes: number of classes (>= 2).
      input_shape: (height, width, channels): grey wafer maps (1) or RGB images (3).
      width: width multiplier on every channel count (1.0 = the paper's network).
      r: composition ratio of self-proliferation, in (0, 1]; 1 = plain convolutions.
      attention: self-attention in every block (True), none (False, the GhostNet-style
        "SP-Net"), or one flag per block.
      norm: normalisation inside attention: "layer" (paper), "batch" or "group".
      head: "conv1x1" (paper: 1x1 conv -> pool -> 1x1 conv to 1280) or "gap" (pool only).
      embedding_output: also output the L2-normalisable embedding (for pair-wise Circle Loss).
      reference_attention: reproduce the published code's single-channel softmax.
      attention_reduction: bottleneck reduction of the attention transform.
      block_depth_multiplier: depth multiplier of each block's own depthwise convolutions;
        None follows the published code (``ceil(1/r) - 1``: 1 at r = 0.5, 16 at r = 0.06,
        where the network grows to ~74M parameters); 1 keeps the width fixed for any r.
      fused: the CPU fast paths (1x1 convolutions as matrix products, training on channel parts
        (``spanet.layers.parts``), BatchNorm folded in inference, ``predict`` on two halves of each
        batch at once: :class:`SPANetModel`);
        the same weights and outputs. False computes layer by layer in one plain functional
        model, as the published code does, for speed comparisons.
      blocks: the block table; the 16-block reference by default.

    Returns:
      A model mapping float images to cosine similarities with each class (``logits``),
      and the embedding as a second output when ``embedding_output`` is set.
    """
    num_classes = check_positive_int("num_classes", num_classes, minimum=2)
    shape = check_input_shape(input_shape)
    width = check_positive("width", width)
    r = check_ratio("r", r)
    check_choice("norm", norm, NORMALIZATIONS)
    check_choice("head", head, HEADS)
    flags = _attention_flags(attention, len(blocks))

    inputs = keras.Input(shape=shape, name="image")
    x = _conv_bn_relu(inputs, scale_channels(STEM_FILTERS, width), 3, 2, name="stem")
    for index, (spec, with_attention) in enumerate(zip(blocks, flags), start=1):
        x = SPABlock(
            filters=scale_channels(spec.filters, width),
            expansion=scale_channels(spec.expansion, width),
            kernel_size=spec.kernel_size,
            strides=spec.strides,
            ratio=r,
            attention=with_attention,
            attention_reduction=attention_reduction,
            norm=norm,
            reference_softmax=reference_attention,
            depth_multiplier=block_depth_multiplier,
            fused=fused,
            name=f"block{index}",
        )(x)

    x = _conv_bn_relu(x, scale_channels(HEAD_FILTERS, width), 1, 1, name="head", fused=fused)
    if head == "conv1x1":
        x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="head_pool")(x)
        x = _conv_bn_relu(x, scale_channels(EMBEDDING_FILTERS, width), 1, 1, name="embedding", fused=fused)
        embedding = keras.layers.Flatten(name="embedding")(x)
    else:
        embedding = keras.layers.GlobalAveragePooling2D(name="embedding")(x)
    logits = CosineClassifier(num_classes, name="logits")(embedding)

    outputs = [logits, embedding] if embedding_output else logits
    model_class = SPANetModel if fused else keras.Model
    return model_class(inputs, outputs, name=name or "spanet")
