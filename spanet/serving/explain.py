"""The ``spanet explain`` work: inputs -> the local model's Grad-CAM maps -> PNG overlays on each wafer."""

from __future__ import annotations

import os
import re
from typing import List, Sequence, Tuple

from spanet.data.imageio import decode_image, save_enlarged_png
from spanet.explain import overlay, to_shape
from spanet.serving.client import Prediction
from spanet.serving.local import LocalModel
from spanet.serving.predict import PredictInput

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def overlay_name(index: int, ref: str) -> str:
    """A file name for input ``index``: its number (names repeat across folders) and its base name."""
    base = _UNSAFE.sub("_", os.path.basename(ref.replace("#", "_")))
    return f"{index:05d}_{os.path.splitext(base)[0] if base.lower().endswith(('.png', '.jpg', '.jpeg')) else base}.png"


def explain_inputs(
    model: LocalModel, inputs: Sequence[PredictInput], out_dir: str, batch_size: int = 32, pixels: int = 256
) -> List[Tuple[str, Prediction, str]]:
    """(ref, prediction, overlay PNG path) per input; each map is resized to the input's own grid."""
    rows = []
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size]
        for offset, (item, (prediction, cam)) in enumerate(zip(batch, model.explain([i.image for i in batch]))):
            image = decode_image(item.image)
            drawn = overlay(image, to_shape(cam, image.shape[:2]))
            path = save_enlarged_png(drawn, os.path.join(out_dir, overlay_name(start + offset, item.ref)), pixels)
            rows.append((item.ref, prediction, path))
    return rows


__all__ = ["explain_inputs", "overlay_name"]
