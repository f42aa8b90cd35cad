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
step per execution those wrappers are straight-line code, so they are traced unconverted too; with
several, the training and test functions become an explicit ``tf.while_loop`` over the steps.
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


#: Per function: the model's step method and the counter Keras advances after each step.
_STEPS = {"train_function": ("train_step", "_train_counter"), "test_function": ("test_step", "_test_counter")}


def _loops_without_autograph(model: keras.Model, attribute: str) -> bool:
    """Whether :func:`_multi_step_execution` reproduces Keras's loop: a training or test function, the
    model's own ``Model`` step (whose result is the metrics'), one replica outside any strategy."""
    if attribute not in _STEPS or getattr(model, "autotune_steps_per_execution", False):
        return False
    method = _STEPS[attribute][0]
    return (
        getattr(type(model), method) is getattr(keras.Model, method)
        and getattr(model, "_distribution_strategy", None) is None
        and not getattr(model, "jit_compile", False)
    )


def _multi_step_execution(model: keras.Model, attribute: str) -> Callable:
    """Keras's function of several steps per call, as a ``tf.while_loop`` that needs no AutoGraph.

    Keras writes the loop as ``for _ in tf.range(steps): outputs = step(...)``, which AutoGraph turns
    into a loop whose variables are the step's outputs: it traced the training step four times and the
    test step twice, and SP&A-Net's training function took 17 against 7 s to build. This loop carries
    only a counter and returns the metrics' results after the last step, which is what Keras's own
    ``train_step`` and ``test_step`` return after each step.
    """
    step = getattr(model, _STEPS[attribute][0])
    counter = getattr(model, _STEPS[attribute][1])

    def execution(iterator):
        def body(done):
            outputs = step(next(iterator))
            with tf.control_dependencies(tf.nest.flatten(outputs)):
                advanced = counter.assign_add(1)
            with tf.control_dependencies([advanced]):
                return done + 1

        steps = tf.while_loop(lambda done: done < model._steps_per_execution, body, [tf.constant(0, tf.int64)])
        with tf.control_dependencies([steps]):
            return model.get_metrics_result()

    return execution


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
        ):
            return function
        if not _one_step_per_execution(model):
            if not _loops_without_autograph(model, attribute):
                return function
            python_function = _multi_step_execution(model, attribute)
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
