"""A cheaper first step for Keras ``fit``: one trace instead of two, without AutoGraph.

Measured on 2 cores (SP&A-Net width 0.5, 64x64): the first training step took 65-75 s, almost
all of it tracing, and ~45 s of that AutoGraph converting Keras' own code. tf.function also
traced the step twice, because the first call created the optimizer's slot variables. The
project's layers have no tensor-dependent Python control flow (their ``call`` is already marked
``do_not_convert``), so Keras' train / test / predict steps run unconverted, and the slots are
made before the first step: the first step then took ~22 s.

Keras still wrapped each step in a ``tf.function`` with AutoGraph on, which converted its own
``train_function`` / ``step_function`` wrappers at every first call: about 1 s for each of the
train, test and predict functions of the default Trainer (of its 17 s of graph building). With one
step per execution those wrappers are straight-line code, so they are traced unconverted too.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from spanet._keras import keras

#: Keras' function factories and the model attribute each one caches its function in.
_FACTORIES = (
    ("make_train_function", "train_function"),
    ("make_test_function", "test_function"),
    ("make_predict_function", "predict_function"),
)


def _one_step_per_execution(model: keras.Model) -> bool:
    """Whether Keras builds its straight-line single-step function (no loop over steps to convert)."""
    steps = getattr(model, "_steps_per_execution", None)
    return steps is None or (int(steps.numpy()) == 1 and not getattr(model, "autotune_steps_per_execution", False))


def _unconverted_factory(model: keras.Model, factory: Callable, attribute: str) -> Callable:
    """Wraps a ``make_*_function`` so that the function it returns is traced without AutoGraph."""
    made = []  # the last function this factory returned

    def make(force: bool = False):
        function = factory(force)
        if made and function is made[-1]:  # Keras returned its cache: ours
            return function
        python_function = getattr(function, "python_function", None)
        if (
            python_function is None  # run eagerly, or a coordinator's lambda
            or model.run_eagerly
            or getattr(model, "_cluster_coordinator", None) is not None
            or not _one_step_per_execution(model)
        ):
            return function
        unconverted = tf.function(python_function, reduce_retracing=True, autograph=False)
        setattr(model, attribute, unconverted)
        if attribute == "train_function":
            model.train_tf_function = unconverted
        made[:] = [unconverted]
        return unconverted

    return make


def trace_once(model: keras.Model) -> keras.Model:
    """Prepares a compiled model for a fast first ``fit`` / ``evaluate`` / ``predict`` call (in place)."""
    if model.optimizer is None:
        raise ValueError("trace_once needs a compiled model (call compile() first)")
    if not getattr(model.optimizer, "_built", False):  # Keras' own flag; build() is a no-op once built
        model.optimizer.build(model.trainable_variables)
    for step in ("train_step", "test_step", "predict_step"):
        setattr(model, step, tf.autograph.experimental.do_not_convert(getattr(model, step)))
    for factory, attribute in _FACTORIES:
        original = getattr(type(model), factory).__get__(model)  # the class's own, not a wrapper of before
        setattr(model, factory, _unconverted_factory(model, original, attribute))
    return model
