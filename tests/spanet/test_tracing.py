"""trace_once: Keras' train / test / predict functions traced once, without AutoGraph, with the same results."""

import numpy as np
import pytest

from spanet import CircleLoss, build_spanet, make_optimizer
from spanet._keras import keras, tf
from spanet.models.spanet import BlockSpec
from spanet.tracing import trace_once

BLOCKS = (BlockSpec(3, 2, 16, 16), BlockSpec(3, 2, 32, 24))


def _data(count=32, seed=0):
    rng = np.random.RandomState(seed)
    return rng.uniform(size=(count, 16, 16, 1)).astype(np.float32), rng.randint(0, 3, size=count)


def _compiled(steps_per_execution=1, traced=True):
    keras.utils.set_random_seed(0)
    model = build_spanet(3, (16, 16, 1), width=0.25, blocks=BLOCKS)
    model.compile(
        optimizer=make_optimizer("nag", 0.05),
        loss=CircleLoss(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        steps_per_execution=steps_per_execution,
    )
    return trace_once(model) if traced else model


def _run(model):
    x, y = _data()
    history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    return history["loss"], model.evaluate(x, y, batch_size=8, verbose=0), model.predict(x, batch_size=8, verbose=0)


def test_traced_functions_give_keras_own_results():
    loss, evaluation, predictions = _run(_compiled(traced=True))
    plain_loss, plain_evaluation, plain_predictions = _run(_compiled(traced=False))
    np.testing.assert_allclose(loss, plain_loss, rtol=1e-5)
    np.testing.assert_allclose(evaluation, plain_evaluation, rtol=1e-5)
    np.testing.assert_allclose(predictions, plain_predictions, atol=1e-5)


def _count_traces(model, *kinds):
    """Wraps the model's ``{kind}_step`` methods; the returned counts grow once per trace."""
    traces = dict.fromkeys(kinds, 0)
    for kind in kinds:
        step = getattr(model, f"{kind}_step")

        def counted(data, step=step, kind=kind):
            traces[kind] += 1  # runs only while tracing
            return step(data)

        setattr(model, f"{kind}_step", counted)
    return traces


def test_each_function_is_traced_once_and_without_autograph():
    model = _compiled()
    traces = _count_traces(model, "train", "test", "predict")
    for _ in range(2):
        _run(model)
    assert traces == {"train": 1, "test": 1, "predict": 1}
    for function in (model.train_function, model.test_function, model.predict_function):
        assert isinstance(function, tf.types.experimental.PolymorphicFunction)
        assert function._autograph is False  # noqa: SLF001  (tf.function keeps its option there)
    assert model.make_train_function() is model.train_function  # the cache, not a new function


def _fit_and_evaluate(model, count=40):
    x, y = _data(count)
    history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    return history, model.evaluate(x, y, batch_size=8, verbose=0), [w.numpy() for w in model.weights]


def test_several_steps_per_execution_run_the_same_steps_in_one_while_loop():
    # 5 batches an epoch at 3 steps per execution: Keras cuts the second execution to the 2 steps left.
    history, evaluation, weights = _fit_and_evaluate(_compiled(steps_per_execution=3))
    one_history, one_evaluation, one_weights = _fit_and_evaluate(_compiled(steps_per_execution=1))
    keras_history, keras_evaluation, _ = _fit_and_evaluate(_compiled(steps_per_execution=3, traced=False))
    assert history == one_history == keras_history
    np.testing.assert_allclose(evaluation, one_evaluation, rtol=1e-6)
    np.testing.assert_allclose(evaluation, keras_evaluation, rtol=1e-6)
    for weight, one_weight in zip(weights, one_weights):
        np.testing.assert_array_equal(weight, one_weight)


def test_several_steps_per_execution_are_traced_once_without_autograph():
    model = _compiled(steps_per_execution=3)
    traces = _count_traces(model, "train", "test")
    _fit_and_evaluate(model)
    assert traces == {"train": 1, "test": 1}  # Keras's own loop traced them 4 and 2 times
    assert model.train_function._autograph is False and model.test_function._autograph is False  # noqa: SLF001
    assert int(model._train_counter.numpy()) == 10 and int(model._test_counter.numpy()) == 5  # noqa: SLF001
    # Predicting several steps a call keeps Keras's loop, which gathers each step's outputs.
    assert model.predict(_data(16)[0], batch_size=8, verbose=0).shape == (16, 3)
    assert model.predict_function._autograph is True  # noqa: SLF001


def test_a_model_with_its_own_train_step_keeps_keras_loop():
    class OwnStep(type(_compiled())):
        def train_step(self, data):
            return super().train_step(data)

    model = _compiled(steps_per_execution=2, traced=False)
    model.__class__ = OwnStep
    trace_once(model)
    x, y = _data(16)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert model.train_function._autograph is True  # noqa: SLF001  (its result may not be the metrics')


def test_trace_once_refuses_an_uncompiled_model():
    with pytest.raises(ValueError, match="compiled"):
        trace_once(build_spanet(3, (16, 16, 1), width=0.25, blocks=BLOCKS))
