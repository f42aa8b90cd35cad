"""The paper's comparison networks, each ending in the same cosine classifier as SP&A-Net.

- MobileNetV2 / MobileNetV3 (Large): Keras applications, no pretrained weights, any input.
- GhostNet-style "SP-Net": SP&A-Net without attention.
- ResNet-50 with a global-context (GC) block after every bottleneck (GCNet).
"""

from __future__ import annotations

from typing import Optional, Sequence

from spanet._keras import keras
from spanet.layers.attention import SelfAttention
from spanet.layers.block import BN_EPSILON, BN_MOMENTUM
from spanet.layers.heads import CosineClassifier
from spanet.models.spanet import build_spanet, check_input_shape, scale_channels
from spanet.validation import check_positive, check_positive_int

#: ResNet-50's stages: (bottleneck width, blocks, stride of the first block).
RESNET50_STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))


def _cosine_head(backbone: keras.Model, num_classes: int, name: str) -> keras.Model:
    logits = CosineClassifier(num_classes, name="logits")(backbone.output)
    return keras.Model(backbone.input, logits, name=name)


def build_mobilenet_v2(
    num_classes: int, input_shape: Sequence[int], width: float = 1.0, name: Optional[str] = None
) -> keras.Model:
    """MobileNetV2 (alpha = width) from random weights, with a cosine classifier."""
    backbone = keras.applications.MobileNetV2(
        input_shape=tuple(input_shape), alpha=width, include_top=False, weights=None, pooling="avg"
    )
    return _cosine_head(backbone, num_classes, name or "mobilenet_v2")


def build_mobilenet_v3(
    num_classes: int, input_shape: Sequence[int], width: float = 1.0, name: Optional[str] = None
) -> keras.Model:
    """MobileNetV3-Large (alpha = width) from random weights, with a cosine classifier."""
    backbone = keras.applications.MobileNetV3Large(
        input_shape=tuple(input_shape),
        alpha=width,
        include_top=False,
        weights=None,
        pooling="avg",
        include_preprocessing=False,
    )
    return _cosine_head(backbone, num_classes, name or "mobilenet_v3")


def build_ghostnet(
    num_classes: int, input_shape: Sequence[int], width: float = 1.0, name: Optional[str] = None, **kwargs
) -> keras.Model:
    """The GhostNet-style SP-Net: SP&A-Net's network with no attention."""
    return build_spanet(num_classes, input_shape, width=width, attention=False, name=name or "ghostnet", **kwargs)


def _bn(x, name: str):
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)(x)


def _gc_bottleneck(x, width: int, strides: int, project: bool, name: str):
    """ResNet bottleneck (1x1 -> 3x3 -> 1x1, expansion 4) with a GC block before the residual add."""
    out = 4 * width
    shortcut = x
    if project:
        shortcut = keras.layers.Conv2D(out, 1, strides, use_bias=False, name=f"{name}_proj")(x)
        shortcut = _bn(shortcut, f"{name}_proj_bn")
    y = keras.layers.Conv2D(width, 1, use_bias=False, name=f"{name}_conv1")(x)
    y = keras.layers.ReLU(name=f"{name}_relu1")(_bn(y, f"{name}_bn1"))
    y = keras.layers.Conv2D(width, 3, strides, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = keras.layers.ReLU(name=f"{name}_relu2")(_bn(y, f"{name}_bn2"))
    y = keras.layers.Conv2D(out, 1, use_bias=False, name=f"{name}_conv3")(y)
    y = _bn(y, f"{name}_bn3")
    y = SelfAttention(reduction=16, norm="layer", fusion="add", name=f"{name}_gc")(y)
    return keras.layers.ReLU(name=f"{name}_out")(keras.layers.Add(name=f"{name}_add")([shortcut, y]))


def build_resnet50_gc(
    num_classes: int, input_shape: Sequence[int], width: float = 1.0, name: Optional[str] = None
) -> keras.Model:
    """ResNet-50 with a GC block (softmax context, LayerNorm transform, channel add) in every bottleneck."""
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = keras.layers.Conv2D(scale_channels(64, width), 7, 2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = keras.layers.ReLU(name="stem_relu")(_bn(x, "stem_bn"))
    x = keras.layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x)
    for stage, (stage_width, blocks, stride) in enumerate(RESNET50_STAGES, start=1):
        for block in range(blocks):
            x = _gc_bottleneck(
                x,
                scale_channels(stage_width, width),
                strides=stride if block == 0 else 1,
                project=block == 0,
                name=f"stage{stage}_block{block + 1}",
            )
    embedding = keras.layers.GlobalAveragePooling2D(name="embedding")(x)
    logits = CosineClassifier(num_classes, name="logits")(embedding)
    return keras.Model(inputs, logits, name=name or "resnet50_gc")


def check_common(num_classes: int, input_shape: Sequence[int], width: float) -> None:
    """The arguments every builder shares, checked before any layer is made."""
    check_positive_int("num_classes", num_classes, minimum=2)
    check_input_shape(input_shape)
    check_positive("width", width)
