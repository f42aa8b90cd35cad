"""Inference on two halves of a batch is the same function as one pass, for any batch size."""

import numpy as np
import pytest

from spanet import build_spanet
from spanet._keras import keras, tf
from spanet.export import FrozenInference
from spanet.halves import call_in_halves
from spanet.models.spanet import BlockSpec, SPANetModel

BLOCKS = (BlockSpec(3, 2, 16, 16), BlockSpec(3, 2, 32, 24))


@pytest.fixture
def small_model(randomise_batchnorm):
    """``small_model(**options)``: a small SP&A-Net whose BatchNorm statistics are far from the identity
    (so that a batch-coupled path would show)."""
    return lambda **options: randomise_batchnorm(build_spanet(3, (16, 16, 1), width=0.25, blocks=BLOCKS, **options))


def _images(count: int) -> np.ndarray:
    return np.random.RandomState(count).uniform(size=(count, 16, 16, 1)).astype(np.float32)


@pytest.mark.parametrize("count", [1, 2, 5, 8])
def test_call_in_halves_keeps_order_and_structure(count):
    images = tf.constant(_images(count))
    calls = []

    def function(half):
        calls.append(half.shape[0])
        return {"sum": tf.reduce_sum(half, axis=[1, 2, 3]), "pair": [half[:, 0, 0, 0], 2.0 * half[:, 1, 1, 0]]}

    halved = tf.function(lambda x: call_in_halves(function, x), autograph=False)(images)
    assert len(calls) == 2  # traced once for each half
    whole = function(images)
    tf.nest.map_structure(lambda a, b: np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6), halved, whole)
    assert halved["sum"].shape == (count,)


@pytest.mark.parametrize("count", [1, 3, 8])
def test_frozen_halves_answer_as_one_pass(count, small_model):
    model = small_model()
    images = tf.constant(_images(count))
    halves = FrozenInference(model)(images).numpy()
    np.testing.assert_allclose(halves, FrozenInference(model, halves=False)(images).numpy(), atol=1e-6)
    np.testing.assert_allclose(halves, model(images, training=False).numpy(), atol=1e-5)


def test_keras_predict_runs_in_halves_with_the_models_answers(small_model):
    model = small_model()
    assert isinstance(model, SPANetModel)
    images = _images(11)
    expected = model(images, training=False).numpy()
    for batch_size in (4, 11):  # batches of an even size, a last short odd one, and one odd batch
        np.testing.assert_allclose(model.predict(images, batch_size=batch_size, verbose=0), expected, atol=1e-5)
    step = tf.function(model.predict_step, autograph=False)
    graph = step.get_concrete_function(tf.TensorSpec([None, 16, 16, 1])).graph.as_graph_def()
    # The network is traced once for each half: two copies of the classifier.
    assert sum(node.op == "MatMul" and "/logits/" in node.name for node in graph.node) == 2


def test_the_layer_by_layer_model_is_a_plain_functional_model(small_model):
    model = small_model(fused=False)
    assert type(model) is not SPANetModel and isinstance(model, keras.Model)
    images = _images(3)
    np.testing.assert_allclose(model.predict(images, verbose=0), model(images, training=False).numpy(), atol=1e-5)


def test_embedding_output_is_split_and_joined_too(small_model):
    model = small_model(embedding_output=True)
    images = _images(5)
    logits, embedding = model.predict(images, batch_size=5, verbose=0)
    expected_logits, expected_embedding = model(images, training=False)
    np.testing.assert_allclose(logits, expected_logits.numpy(), atol=1e-5)
    np.testing.assert_allclose(embedding, expected_embedding.numpy(), atol=1e-5)
