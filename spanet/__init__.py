"""SP&A-Net: the self-proliferation-and-attention network for wafer defect patterns (no TFX here).

    from spanet import build_spanet, build_model, CircleLoss
    from spanet import class_weights, model_options, augment_config  # the training recipe

The names below are loaded lazily, so ``import spanet.data`` (the data readers and
the generator) does not pay for importing TensorFlow.
"""

from __future__ import annotations

import importlib
import os

# Keras 2 (tf_keras) for the whole TFX 1.16 stack, set once for every importer of the library: it must
# precede TensorFlow's first import (see spanet._keras), and a package's __init__ runs before its modules.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
from typing import Any  # noqa: E402

from spanet.threads import apply_thread_defaults  # noqa: E402  (no TensorFlow import)

# One thread per op on a 2-core machine (spanet.threads): also before TensorFlow's first op.
apply_thread_defaults()

__version__ = "0.1.0"

_LAZY = {
    "build_spanet": "spanet.models",
    "build_model": "spanet.models",
    "MODEL_BUILDERS": "spanet.models",
    "CircleLoss": "spanet.losses",
    "CosineAnnealing": "spanet.optim",
    "make_optimizer": "spanet.optim",
    "make_learning_rate": "spanet.optim",
    "SelfProliferation": "spanet.layers",
    "SelfAttention": "spanet.layers",
    "SPABlock": "spanet.layers",
    "CosineClassifier": "spanet.layers",
    "ScaledSoftmax": "spanet.layers",
    # The training recipe (plain arguments): what the Trainer and the experiments both call.
    "class_weights": "spanet.recipe",
    "model_options": "spanet.recipe",
    "augment_config": "spanet.recipe",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'spanet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
