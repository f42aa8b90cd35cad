"""Optimisers and schedules of the ablation, and temperature calibration."""

import math

import numpy as np
import pytest

from spanet import CosineAnnealing, make_learning_rate, make_optimizer
from spanet._keras import keras, tf
from spanet.optim import FusedSGD
from spanet.calibration import expected_calibration_error, fit_temperature, softmax_probabilities


def test_cosine_annealing_follows_the_formula():
    schedule = CosineAnnealing(1e-2, 1e-4, decay_steps=100)
    for step in [0, 25, 50, 100, 150]:
        t = min(step, 100) / 100
        expected = 1e-4 + (1e-2 - 1e-4) * (1 + math.cos(math.pi * t)) / 2
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-5)
    warm = CosineAnnealing(1e-2, 1e-4, decay_steps=100, warmup_steps=10)
    assert float(warm(0)) == pytest.approx(float(schedule(0)) * 0.1, rel=1e-5)
    assert CosineAnnealing.from_config(schedule.get_config()).get_config() == schedule.get_config()


def test_optimizers():
    nag = make_optimizer("nag", 0.1)
    assert isinstance(nag, keras.optimizers.SGD) and nag.nesterov and nag.momentum == 0.9
    sgd = make_optimizer("sgd", 0.1)
    assert isinstance(sgd, keras.optimizers.SGD) and not sgd.nesterov and sgd.momentum == 0.0
    assert isinstance(make_optimizer("adam", 1e-3), keras.optimizers.Adam)
    with pytest.raises(ValueError, match="optimizer must be one of 'nag', 'adam', 'sgd'"):
        make_optimizer("rmsprop")


def _steps(optimizer, steps=4, exclude=None, eager=False):
    """Variables after ``steps`` updates with fixed, different gradients, in float64 (in one traced
    function, or eagerly step by step)."""
    rng = np.random.RandomState(7)
    variables = [
        tf.Variable(rng.normal(size=shape), dtype=tf.float64, name=name)
        for shape, name in (((3, 5), "kernel"), ((5,), "bias"))
    ]
    if exclude:
        optimizer.exclude_from_weight_decay(var_names=exclude)
    gradients = [[tf.constant(rng.normal(size=v.shape)) for v in variables] for _ in range(steps)]

    def step(grads):
        optimizer.apply_gradients(zip(grads, variables))

    if not eager:
        step = tf.function(step)

    for grads in gradients:
        step(grads)
    return [v.numpy() for v in variables]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(momentum=0.9, nesterov=True, weight_decay=1e-2),
        dict(momentum=0.9, nesterov=True),
        dict(momentum=0.8, nesterov=False, weight_decay=5e-3),
        dict(weight_decay=1e-2),
        dict(),
    ],
    ids=["nag+decay", "nag", "momentum+decay", "sgd+decay", "sgd"],
)
def test_fused_sgd_takes_the_stock_optimizers_steps(kwargs):
    schedule = CosineAnnealing(0.1, 1e-3, decay_steps=3)  # a changing rate, and one past the schedule's end
    expected = _steps(keras.optimizers.SGD(learning_rate=schedule, **kwargs), exclude=["bias"])
    fused = _steps(FusedSGD(learning_rate=schedule, **kwargs), exclude=["bias"])
    # Eagerly, each step reads its own rate (the fused optimiser reads the rates once per traced graph).
    fused_eager = _steps(FusedSGD(learning_rate=schedule, **kwargs), exclude=["bias"], eager=True)
    for want, got, got_eager in zip(expected, fused, fused_eager):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(got_eager, want, rtol=1e-12, atol=1e-14)
    assert not np.allclose(expected[0], _steps(keras.optimizers.SGD(learning_rate=schedule, **kwargs), steps=1)[0])


def test_fused_sgd_reads_its_rates_once_per_traced_step():
    optimizer = FusedSGD(learning_rate=CosineAnnealing(0.1, 1e-3, decay_steps=3), momentum=0.9, weight_decay=1e-2)
    variables = [tf.Variable(np.ones(shape, np.float32)) for shape in ((3, 5), (5,), (2,))]
    step = tf.function(lambda grads: optimizer.apply_gradients(zip(grads, variables)))
    graph = step.get_concrete_function([tf.TensorSpec(v.shape, tf.float32) for v in variables]).graph
    updates = [op for op in graph.get_operations() if op.type == "ResourceApplyKerasMomentum"]
    decays = [op for op in graph.get_operations() if op.type == "ResourceApplyGradientDescent"]
    assert len(updates) == len(decays) == 3
    # One learning-rate tensor, one momentum tensor and one decay rate for all the variables.
    assert len({op.inputs[2].name for op in updates}) == 1  # lr
    assert len({op.inputs[4].name for op in updates}) == 1  # momentum
    assert len({op.inputs[1].name for op in decays}) == 1  # alpha


def test_fused_sgd_round_trips_its_config():
    nag = make_optimizer("nag", 0.05, weight_decay=1e-4)
    assert isinstance(nag, FusedSGD)
    again = keras.optimizers.deserialize(keras.optimizers.serialize(nag))
    assert type(again) is FusedSGD and again.get_config() == nag.get_config()


def test_learning_rate_factory():
    rate, callbacks = make_learning_rate("cosine", 1e-2, 1e-4, total_steps=50)
    assert isinstance(rate, CosineAnnealing) and callbacks == []
    rate, callbacks = make_learning_rate("plateau", 1e-2, 1e-4, patience=2)
    assert rate == 1e-2 and isinstance(callbacks[0], keras.callbacks.ReduceLROnPlateau)
    with pytest.raises(ValueError, match="schedule must be one of"):
        make_learning_rate("step")
    with pytest.raises(ValueError, match="final_learning_rate must be in"):
        CosineAnnealing(1e-3, 1e-2)


def test_temperature_scaling_recovers_the_true_scale_and_calibrates():
    rng = np.random.RandomState(0)
    cosines = rng.uniform(-1.0, 1.0, size=(5000, 4))
    true_probabilities = softmax_probabilities(cosines, 10.0)
    labels = np.array([rng.choice(4, p=p) for p in true_probabilities])
    scale = fit_temperature(cosines, labels)
    assert scale == pytest.approx(10.0, rel=0.1)
    over_confident = expected_calibration_error(softmax_probabilities(cosines, 64.0), labels)
    calibrated = expected_calibration_error(softmax_probabilities(cosines, scale), labels)
    assert calibrated < 0.03 and over_confident > 0.1


def test_fit_temperature_rejects_bad_shapes():
    with pytest.raises(ValueError, match="cosines must be"):
        fit_temperature(np.zeros((3,)), np.zeros(3))


def test_sigmoid_temperature_recovers_the_true_scale_of_multilabel_cosines():
    from spanet.calibration import fit_sigmoid_temperature, sigmoid_probabilities

    rng = np.random.RandomState(1)
    cosines = rng.uniform(-0.2, 1.0, size=(4000, 3))
    multi_hot = (rng.uniform(size=cosines.shape) < sigmoid_probabilities(cosines, 12.0)).astype(np.float64)
    assert fit_sigmoid_temperature(cosines, multi_hot) == pytest.approx(12.0, rel=0.1)
    assert sigmoid_probabilities(np.array([0.5]), 30.0)[0] == pytest.approx(0.5)  # the boundary is even odds
    with pytest.raises(ValueError, match="both be"):
        fit_sigmoid_temperature(cosines, multi_hot[:, :2])
