"""Model builders: SP&A-Net and the paper's baselines behind one entry point, :func:`build_model`."""

from __future__ import annotations

from typing import Callable, Dict, Sequence

from spanet._keras import keras
from spanet.models.baselines import (
    build_ghostnet,
    build_mobilenet_v2,
    build_mobilenet_v3,
    build_resnet50_gc,
    check_common,
)
from spanet.models.spanet import REFERENCE_BLOCKS, BlockSpec, build_spanet, scale_channels
from spanet.validation import check_choice

#: Every network :func:`build_model` can make, by name.
MODEL_BUILDERS: Dict[str, Callable[..., keras.Model]] = {
    "spanet": build_spanet,
    "ghostnet": build_ghostnet,
    "mobilenet_v2": build_mobilenet_v2,
    "mobilenet_v3": build_mobilenet_v3,
    "resnet50_gc": build_resnet50_gc,
}


def build_model(
    name: str,
    num_classes: int = 9,
    input_shape: Sequence[int] = (64, 64, 1),
    width: float = 1.0,
    **kwargs,
) -> keras.Model:
    """Builds a network by name; every one outputs cosine logits for Circle Loss.

    Args:
      name: one of ``MODEL_BUILDERS`` ("spanet", "ghostnet", "mobilenet_v2",
        "mobilenet_v3", "resnet50_gc").
      num_classes, input_shape, width: as for :func:`build_spanet`.
      **kwargs: builder-specific options (SP&A-Net's r, attention, norm, head, ...).
    """
    check_choice("name", name, MODEL_BUILDERS)
    check_common(num_classes, input_shape, width)
    return MODEL_BUILDERS[name](num_classes=num_classes, input_shape=input_shape, width=width, **kwargs)


__all__ = ["MODEL_BUILDERS", "build_model", "build_spanet", "BlockSpec", "REFERENCE_BLOCKS", "scale_channels"]
