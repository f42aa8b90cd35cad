"""The exported signatures classify with the frozen model: the same answers as the Keras model, no weight reads."""

import runpy
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from components import features
from components.config import IMAGE_XF, ImageConfig
from spanet.data.imageio import encode_png
from spanet.export import FrozenInference

# The Trainer tests' small model, maps and Transform stand-in (test modules import by path here).
_trainer_tests = runpy.run_path(str(Path(__file__).with_name("test_trainer.py")))
NORMAL, _separable = _trainer_tests["NORMAL"], _trainer_tests["_separable"]
_small_spanet, _TransformOutput = _trainer_tests["_small_spanet"], _trainer_tests["_TransformOutput"]

SCALE = 5.0


@pytest.fixture
def randomised_model(randomise_batchnorm):
    """A small SP&A-Net whose BatchNorm statistics and affine weights are far from the identity, so that a
    fold shows."""
    return randomise_batchnorm(_small_spanet(), affine=True)


def test_frozen_inference_answers_as_the_model_and_is_a_snapshot(randomised_model):
    model = randomised_model
    frozen = FrozenInference(model)
    x = np.random.RandomState(1).uniform(size=(5, 16, 16, 1)).astype(np.float32)
    np.testing.assert_allclose(frozen(tf.constant(x)).numpy(), model(x, training=False).numpy(), atol=1e-5)
    stacked = FrozenInference(model, batches_per_call=2)(tf.constant(np.stack([x, x[::-1]])))
    np.testing.assert_allclose(stacked[1].numpy(), model(x[::-1], training=False).numpy(), atol=1e-5)
    before = frozen(tf.constant(x)).numpy()
    for variable in model.trainable_variables:
        variable.assign(variable * 2.0)
    np.testing.assert_array_equal(frozen(tf.constant(x)).numpy(), before)
    with pytest.raises(ValueError, match="runs inference only; call the Keras model to train"):
        frozen(tf.constant(x), training=True)


def test_exported_signatures_answer_as_the_keras_model_without_reading_its_weights(tmp_path, randomised_model):
    from components.serving import ServingModel, export_serving_model

    model = randomised_model
    image = ImageConfig(height=16, width=16, max_channel=False, support_channel=False)  # one channel
    serving = ServingModel(model, _TransformOutput(image), ["Center", "Edge-Ring", NORMAL], 2, SCALE, 0.5, -1.0)
    path = str(tmp_path / "model")
    export_serving_model(path, serving)
    loaded = tf.saved_model.load(path)

    maps = _separable(6, seed=3)[0]
    answers = loaded.signatures["serving_default"](images=tf.constant([encode_png(m) for m in maps]))
    pixels = _TransformOutput(image).transform_features_layer()(
        {features.IMAGE_KEY: tf.constant([[encode_png(m)] for m in maps])}
    )[IMAGE_XF]
    expected = tf.nn.softmax(model(pixels, training=False) * SCALE, axis=-1).numpy()
    np.testing.assert_allclose(answers["probabilities"].numpy(), expected, atol=1e-5)
    explained = loaded.signatures["explain"](images=tf.constant([encode_png(m) for m in maps]))
    np.testing.assert_allclose(explained["probabilities"].numpy(), expected, atol=1e-5)

    # The frozen signatures capture only the serving module's own few variables; explain, which
    # needs the live model's gradients, captures every model weight as well.
    weights = len(model.variables)
    assert len(loaded.signatures["serving_default"].captured_inputs) < weights
    assert len(loaded.signatures["serving_examples"].captured_inputs) < weights
    assert len(loaded.signatures["explain"].captured_inputs) >= weights
