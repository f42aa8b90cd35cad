"""Serialisable Keras layers of SP&A-Net (registered under the ``spanet`` package)."""

from spanet.layers.attention import SelfAttention, hard_sigmoid
from spanet.layers.block import SPABlock
from spanet.layers.depthwise import SmallMapDepthwiseConv2D
from spanet.layers.heads import CosineClassifier, ScaledSoftmax
from spanet.layers.pointwise import PointwiseConv2D
from spanet.layers.proliferation import SelfProliferation

__all__ = [
    "SelfProliferation",
    "SelfAttention",
    "SPABlock",
    "CosineClassifier",
    "ScaledSoftmax",
    "PointwiseConv2D",
    "SmallMapDepthwiseConv2D",
    "hard_sigmoid",
]
