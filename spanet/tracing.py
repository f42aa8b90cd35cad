"""A cheaper first step for Keras ``fit``: one trace instead of two, without AutoGraph.

Measured on 2 cores (SP&A-Net width 0.5, 64x64): the first training step took 65-75 s, almost
all of it tracing, and ~45 s of that AutoGraph converting Keras' own code. tf.function also
traced the step twice, because the first call created the optimizer's slot variables. The
project's layers have no tensor-dependent Python control flow (their ``call`` is already marked
``do_not_convert``), so Keras' train / test / predict steps run unconverted, and the slots are
made before the first step: the first step then took ~22 s.
"""

from __future__ import annotations

import tensorflow as tf

from spanet._keras import keras


def trace_once(model: keras.Model) -> keras.Model:
    """Prepares a compiled model for a fast first ``fit`` / ``evaluate`` / ``predict`` call (in place)."""
    if model.optimizer is None:
        raise ValueError("trace_once needs a compiled model (call compile() first)")
    if not getattr(model.optimizer, "_built", False):  # Keras' own flag; build() is a no-op once built
        model.optimizer.build(model.trainable_variables)
    for step in ("train_step", "test_step", "predict_step"):
        setattr(model, step, tf.autograph.experimental.do_not_convert(getattr(model, step)))
    return model
