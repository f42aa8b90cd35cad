"""Precise BatchNorm: recalibrated moving statistics equal the data's batch statistics."""

import numpy as np

from spanet._keras import keras, tf
from spanet.batchnorm import BatchNormRecalibrator, PreciseBatchNormValidation, batchnorm_layers, recalibrate_batchnorm
from spanet.layers import SPABlock


def _model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = SPABlock(filters=8, expansion=16, strides=2, name="block")(x)  # nested BN layers too
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


def test_finds_nested_batchnorm_layers():
    # the model's own + the strided block's five (shortcut dw and projection, expand, strided dw, project)
    assert len(batchnorm_layers(_model())) == 1 + 5


def test_moving_statistics_become_the_mean_of_batch_statistics():
    model = _model()
    rng = np.random.RandomState(0)
    batches = [tf.constant(rng.normal(3.0, 2.0, size=(16, 8, 8, 3)).astype(np.float32)) for _ in range(4)]
    weights_before = [w.numpy() for w in model.trainable_weights]
    assert recalibrate_batchnorm(model, batches, max_batches=10) == 4

    conv = model.layers[1]
    features = [conv(b).numpy().reshape(-1, 4) for b in batches]
    bn = model.get_layer("bn")
    np.testing.assert_allclose(
        bn.moving_mean.numpy(), np.mean([f.mean(axis=0) for f in features], axis=0), rtol=1e-4, atol=1e-4
    )
    # Keras stores the unbiased batch variance in the moving average.
    expected_var = np.mean([f.var(axis=0, ddof=1) for f in features], axis=0)
    np.testing.assert_allclose(bn.moving_variance.numpy(), expected_var, rtol=1e-3)
    for before, after in zip(weights_before, model.trainable_weights):
        np.testing.assert_array_equal(before, after.numpy())
    assert bn.momentum == 0.99  # restored


def test_inference_matches_training_mode_after_recalibration():
    model = _model()
    data = tf.constant(np.random.RandomState(1).normal(5.0, 3.0, size=(64, 8, 8, 3)).astype(np.float32))
    stale_gap = np.abs(model(data, training=False) - model(data, training=True)).max()
    BatchNormRecalibrator(model)([data])
    gap = np.abs(model(data, training=False) - model(data, training=True)).max()
    assert gap < 0.05 * stale_gap


def test_callback_writes_recalibrated_validation_metrics():
    model = _model()
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.RandomState(2).normal(size=(32, 8, 8, 3)).astype(np.float32)
    y = np.zeros((32, 8), np.float32)
    validation = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    callback = PreciseBatchNormValidation(tf.data.Dataset.from_tensor_slices(x).batch(16), validation, batches=2)
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[callback])
    assert "val_loss" in history.history and len(history.history["val_loss"]) == 2
