"""Training under tf.distribute: the strategy choice, the scaling rule, and FusedSGD and precise BatchNorm
on two replicas (MirroredStrategy over two logical CPUs, in a subprocess: see tests/two_replicas.py)."""

import json
import runpy
from pathlib import Path

import numpy as np
import pytest

from spanet import distribute

run_on_two_replicas = runpy.run_path(str(Path(__file__).resolve().parents[1] / "two_replicas.py"))[
    "run_on_two_replicas"
]


def _cluster(workers: int, chief: bool = False, task=("worker", 0), **others) -> str:
    cluster = {"worker": [f"host{i}:2222" for i in range(workers)], **others}
    if chief:
        cluster["chief"] = ["chief:2222"]
    return json.dumps({"cluster": cluster, "task": {"type": task[0], "index": task[1]}})


def test_strategy_kind_follows_devices_and_tf_config(monkeypatch):
    assert [distribute.strategy_kind(gpus, "") for gpus in (0, 1, 2, 8)] == ["default", "default"] + ["mirrored"] * 2
    assert distribute.strategy_kind(0, _cluster(2)) == distribute.MULTI_WORKER
    assert distribute.strategy_kind(4, _cluster(1, chief=True)) == distribute.MULTI_WORKER  # the chief trains too
    assert distribute.strategy_kind(4, _cluster(1)) == distribute.MIRRORED  # one worker: its GPUs
    # An evaluator or a parameter server is no training replica.
    assert distribute.worker_count(_cluster(1, evaluator=["e:1"], ps=["p:1"])) == 1
    monkeypatch.setenv("TF_CONFIG", _cluster(3))
    assert distribute.worker_count() == 3 and distribute.strategy_kind(0) == distribute.MULTI_WORKER
    monkeypatch.delenv("TF_CONFIG")
    assert distribute.parse_tf_config() == {} and distribute.strategy_kind(1) == distribute.DEFAULT
    with pytest.raises(ValueError, match="JSON object"):
        distribute.parse_tf_config("[1, 2]")


def test_chief_writes_the_outputs():
    assert distribute.is_chief("") and distribute.is_chief({"cluster": {"worker": ["a:1"]}})
    assert distribute.is_chief(_cluster(2, task=("worker", 0)))
    assert not distribute.is_chief(_cluster(2, task=("worker", 1)))
    assert distribute.is_chief(_cluster(2, chief=True, task=("chief", 0)))
    assert not distribute.is_chief(_cluster(2, chief=True, task=("worker", 0)))


def test_choose_strategy_builds_multi_worker_from_tf_config_without_starting_workers(monkeypatch):
    built = []
    monkeypatch.setattr(distribute.tf.distribute, "MultiWorkerMirroredStrategy", lambda: built.append(1) or "mwms")
    assert distribute.choose_strategy(_cluster(2)) == "mwms" and built == [1]


def test_scaling_rule():
    assert distribute.global_batch_size(64, 4) == 256
    with pytest.raises(ValueError, match=">= 1"):
        distribute.global_batch_size(64, 0)
    assert distribute.scale_learning_rate(0.01, 256, 64) == pytest.approx(0.04)  # NAG / SGD: linear
    assert distribute.scale_learning_rate(0.01, 256, 64, "adam") == pytest.approx(0.02)  # Adam: square root
    assert distribute.scale_learning_rate(0.01, 64, 64) == 0.01  # one replica: unchanged
    assert distribute.scaled_warmup_epochs(0, 128, 64) == distribute.MIN_SCALED_WARMUP_EPOCHS
    assert distribute.scaled_warmup_epochs(3, 128, 64) == 3 and distribute.scaled_warmup_epochs(0, 64, 64) == 0


# Cases run by tests/two_replicas.py on two logical CPUs.


def choose_on_two_cpus() -> dict:
    """What choose_strategy builds when two CPU devices are visible (and no GPU)."""
    from spanet._keras import tf

    mirrored = distribute.choose_strategy("", device_type="CPU")
    default = distribute.choose_strategy("")
    return {
        "cpu_strategy": type(mirrored).__name__,
        "cpu_replicas": distribute.replicas(mirrored),
        "gpu_strategy_is_default": default is tf.distribute.get_strategy(),
        "gpu_replicas": distribute.replicas(default),
    }


def test_choose_strategy_mirrors_over_the_visible_devices():
    result = run_on_two_replicas(__file__, "choose_on_two_cpus")
    assert result == {
        "cpu_strategy": "MirroredStrategy",
        "cpu_replicas": 2,
        "gpu_strategy_is_default": True,
        "gpu_replicas": 1,
    }


def _small_model(keras):
    """No BatchNorm (per-replica batch statistics differ from the global batch's by design), custom layers."""
    from spanet.layers import CosineClassifier, SelfAttention, SelfProliferation

    inputs = keras.Input((8, 8, 2))
    x = SelfProliferation(8, ratio=0.5, kernel_size=3)(inputs)
    x = keras.layers.ReLU()(x)
    x = SelfProliferation(16, ratio=0.5)(x)  # 1x1: the fused matrix-product path
    x = SelfAttention(reduction=4, norm="layer")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, CosineClassifier(3)(x))


def fused_sgd_mirrored_and_default() -> dict:
    """The same 6 NAG steps (weight decay, warm-up + cosine rate, class-weighted Circle Loss) on each strategy."""
    from spanet import CircleLoss, CosineAnnealing, make_optimizer
    from spanet._keras import keras, tf
    from spanet.tracing import trace_once

    rng = np.random.RandomState(0)
    images = rng.normal(size=(48, 8, 8, 2)).astype(np.float32)
    labels = rng.randint(0, 3, size=48)
    images[..., 0] += labels[:, None, None] * 0.5  # a learnable signal
    weights = np.array([0.5, 1.0, 3.0], np.float32)[labels]  # per-sample class weights
    global_batch = 16
    data = tf.data.Dataset.from_tensor_slices((images, labels, weights)).batch(global_batch)

    tf.keras.utils.set_random_seed(1)
    initial = _small_model(keras).get_weights()
    results = {}
    for name, strategy in (
        ("default", tf.distribute.get_strategy()),
        ("mirrored", distribute.choose_strategy("", device_type="CPU")),
    ):
        with strategy.scope():
            model = _small_model(keras)
            model.set_weights(initial)
            rate = CosineAnnealing(0.01, 1e-4, decay_steps=6, warmup_steps=2)  # the Trainer's rates
            model.compile(optimizer=make_optimizer("nag", rate, weight_decay=1e-2), loss=CircleLoss())
            trace_once(model)  # as the Trainer does: the optimizer's slots made under the strategy
        history = model.fit(data, epochs=2, verbose=0, shuffle=False)  # 3 steps an epoch
        results[name] = {
            "replicas": distribute.replicas(strategy),
            "optimizer": type(model.optimizer).__name__,
            "steps": int(model.optimizer.iterations.numpy()),
            "loss": history.history["loss"],
            "weights": model.get_weights(),
        }
    default, mirrored = results["default"], results["mirrored"]
    moved = max(float(np.abs(w - w0).max()) for w, w0 in zip(default["weights"], initial))
    difference = max(float(np.abs(a - b).max()) for a, b in zip(default["weights"], mirrored["weights"]))
    # Relative to each tensor's scale: float32 sums in another order differ by a few ulps of the largest terms.
    relative = max(
        float(np.abs(a - b).max() / np.abs(a).max()) for a, b in zip(default["weights"], mirrored["weights"])
    )
    return {
        "replicas": [default["replicas"], mirrored["replicas"]],
        "optimizers": [default["optimizer"], mirrored["optimizer"]],
        "steps": [default["steps"], mirrored["steps"]],
        "loss": [default["loss"], mirrored["loss"]],
        "moved": moved,
        "max_difference": difference,
        "max_relative_difference": relative,
    }


def test_fused_sgd_steps_on_two_replicas_equal_the_default_strategys():
    result = run_on_two_replicas(__file__, "fused_sgd_mirrored_and_default")
    print(f"FusedSGD mirrored vs default: {result}")
    assert result["replicas"] == [1, 2] and result["optimizers"] == ["FusedSGD", "FusedSGD"]
    assert result["steps"] == [6, 6]
    assert result["moved"] > 1e-3  # the steps did change the weights
    # Keras' loss scaling (mean over the replica's half / 2 replicas, gradients summed) gives the global mean.
    np.testing.assert_allclose(result["loss"][1], result["loss"][0], rtol=1e-5)
    assert result["max_relative_difference"] < 1e-5 and result["max_difference"] < 1e-5


def precise_batchnorm_on_two_replicas() -> dict:
    """SP&A-Net trained a little on two replicas (their BN statistics differ), then re-estimated."""
    from spanet import CircleLoss, build_spanet, make_optimizer
    from spanet._keras import tf
    from spanet.batchnorm import batchnorm_layers, recalibrate_batchnorm
    from spanet.models.spanet import BlockSpec
    from spanet.tracing import trace_once

    blocks = (BlockSpec(3, 2, 16, 16), BlockSpec(3, 1, 24, 16))
    rng = np.random.RandomState(0)
    images = rng.uniform(size=(64, 16, 16, 1)).astype(np.float32)
    images[:32] *= 0.2  # the two replicas' halves of each batch have different statistics
    labels = rng.randint(0, 2, size=64)
    strategy = distribute.choose_strategy("", device_type="CPU")
    with strategy.scope():
        model = build_spanet(2, (16, 16, 1), width=0.25, blocks=blocks)
        model.compile(optimizer=make_optimizer("nag", 0.01), loss=CircleLoss())
        trace_once(model)
    model.fit(images, labels, batch_size=64, epochs=2, verbose=0, shuffle=False)
    statistics = [layer.moving_mean for layer in batchnorm_layers(model)]
    spread_before = max(float(np.abs(s.values[0].numpy() - s.values[1].numpy()).max()) for s in statistics)

    single = build_spanet(2, (16, 16, 1), width=0.25, blocks=blocks)
    single.set_weights(model.get_weights())
    batches = [tf.constant(images[i : i + 16]) for i in range(0, 64, 16)]
    assert recalibrate_batchnorm(model, batches) == 4 and recalibrate_batchnorm(single, batches) == 4
    expected = [layer.moving_variance.numpy() for layer in batchnorm_layers(single)]
    replicas = [[variable.numpy() for variable in layer.moving_variance.values] for layer in batchnorm_layers(model)]
    difference = max(float(np.abs(copy - want).max()) for want, copies in zip(expected, replicas) for copy in copies)
    single.compile(optimizer="sgd", loss=CircleLoss())
    trace_once(single)
    evaluation = (images, labels)
    return {
        "spread_before": spread_before,
        "max_difference": difference,
        "loss": [float(m.evaluate(*evaluation, batch_size=16, verbose=0)) for m in (single, model)],
    }


def test_precise_batchnorm_reestimates_every_replicas_statistics():
    result = run_on_two_replicas(__file__, "precise_batchnorm_on_two_replicas")
    assert result["spread_before"] > 1e-3  # training left each replica statistics of its own half
    assert result["max_difference"] < 1e-4  # every replica's copy is the single-device re-estimate
    # so evaluation on the two replicas (each reads its own copy) matches the single device's
    assert result["loss"][1] == pytest.approx(result["loss"][0], rel=1e-4)
