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


def test_each_function_is_traced_once_and_without_autograph():
    model = _compiled()
    traces = {"train": 0, "test": 0, "predict": 0}
    for kind in traces:
        step = getattr(model, f"{kind}_step")

        def counted(data, step=step, kind=kind):
            traces[kind] += 1  # runs only while tracing
            return step(data)

        setattr(model, f"{kind}_step", counted)
    for _ in range(2):
        _run(model)
    assert traces == {"train": 1, "test": 1, "predict": 1}
    for function in (model.train_function, model.test_function, model.predict_function):
        assert isinstance(function, tf.types.experimental.PolymorphicFunction)
        assert function._autograph is False  # noqa: SLF001  (tf.function keeps its option there)
    assert model.make_train_function() is model.train_function  # the cache, not a new function


def test_several_steps_per_execution_keep_keras_own_loop():
    model = _compiled(steps_per_execution=2)
    loss, _, predictions = _run(model)
    assert np.all(np.isfinite(loss)) and predictions.shape == (32, 3)
    assert model.train_function._autograph is True  # noqa: SLF001  (Keras' loop over steps needs AutoGraph)


def test_trace_once_refuses_an_uncompiled_model():
    with pytest.raises(ValueError, match="compiled"):
        trace_once(build_spanet(3, (16, 16, 1), width=0.25, blocks=BLOCKS))
