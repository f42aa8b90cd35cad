"""The exported model in this process, without a server: for batch scoring and explanations.

``LocalModel(path)`` takes a SavedModel folder or a serving base folder (``<base>/<version>/``,
the newest complete version is used, as TF Serving would) and answers the same
:class:`~spanet.serving.client.Prediction` objects as the gRPC client, read from the outputs by the
same function, so a batch job and a served model cannot disagree on what an answer means.
"""

from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from spanet.serving.client import Prediction, predictions_from_outputs
from spanet.serving.contract import (
    CLASS_ID,
    CLASS_NAME,
    DEFAULT_SIGNATURE,
    EXPLAIN_SIGNATURE,
    EXPLANATION,
    PROBABILITIES,
    UNKNOWN,
)
from spanet.serving.model_manager import SAVED_MODEL_FILES, list_versions


def resolve_model_dir(path: str) -> Tuple[str, int]:
    """(the SavedModel folder, its version) for a SavedModel folder (version: its name if a number, else 0)
    or a serving base folder (its newest complete version); ValueError naming ``path`` otherwise."""
    if any(os.path.isfile(os.path.join(path, name)) for name in SAVED_MODEL_FILES):
        name = os.path.basename(os.path.normpath(path))
        return path, int(name) if name.isdigit() else 0
    versions = list_versions(path)
    if versions:
        return os.path.join(path, str(versions[-1])), versions[-1]
    what = "no such folder" if not os.path.isdir(path) else "neither a SavedModel nor a folder of numbered versions"
    raise ValueError(f"--model-dir {path}: {what}")


class LocalModel:
    """One loaded SavedModel version: predictions and Grad-CAM explanations of encoded images."""

    def __init__(self, path: str):
        self.path, self.version = resolve_model_dir(path)
        self._loaded = tf.saved_model.load(self.path, tags=["serve"])
        signatures = dict(self._loaded.signatures)
        if DEFAULT_SIGNATURE not in signatures:
            raise ValueError(f"--model-dir {self.path}: the SavedModel has no {DEFAULT_SIGNATURE!r} signature")
        self._predict = signatures[DEFAULT_SIGNATURE]
        self._explain = signatures.get(EXPLAIN_SIGNATURE)
        names = getattr(self._loaded, "class_names", None)
        self.class_names: Optional[List[str]] = (
            [n.decode("utf-8") for n in names.numpy().tolist()] if names is not None else None
        )

    @property
    def can_explain(self) -> bool:
        """Whether the model exports the ``explain`` signature (models exported before it do not)."""
        return self._explain is not None

    def _names(self, out) -> List[str]:
        width = out[PROBABILITIES].shape[1]
        if self.class_names and len(self.class_names) == width:
            return list(self.class_names)
        learned = {
            int(i): n.decode("utf-8")
            for i, n, u in zip(out[CLASS_ID], out[CLASS_NAME], out.get(UNKNOWN, np.zeros(len(out[CLASS_ID]), bool)))
            if not u
        }
        return [learned.get(j, f"class_{j}") for j in range(width)]

    def _run(self, function, images: Sequence[bytes]):
        outputs = function(tf.constant(list(images), dtype=tf.string))
        return {key: value.numpy() for key, value in outputs.items()}

    def predict(self, images: Sequence[bytes]) -> List[Prediction]:
        """Predictions for a batch of PNG/JPEG bytes; tf.errors.InvalidArgumentError for an undecodable one."""
        if not images:
            return []
        out = self._run(self._predict, images)
        return predictions_from_outputs(out, self._names(out), self.version)

    def explain(self, images: Sequence[bytes]) -> List[Tuple[Prediction, np.ndarray]]:
        """(prediction, Grad-CAM map at the model's input size in [0, 1]) for each image."""
        if not self.can_explain:
            raise ValueError(
                f"--model-dir {self.path}: the SavedModel has no {EXPLAIN_SIGNATURE!r} signature "
                "(exported before explanations existed); retrain to explain"
            )
        if not images:
            return []
        out = self._run(self._explain, images)
        return list(zip(predictions_from_outputs(out, self._names(out), self.version), out[EXPLANATION]))


__all__ = ["LocalModel", "resolve_model_dir"]
