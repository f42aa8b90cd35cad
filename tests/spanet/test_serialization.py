"""Round trips: a `.keras` file and a SavedModel reload with identical outputs, and the
SavedModel's serving signature runs after `tf.saved_model.load` (what TFMA and TF Serving do)."""

import numpy as np
import pytest

from spanet import CircleLoss, CosineAnnealing, build_spanet, make_optimizer
from spanet._keras import keras, tf
from spanet.export import export_saved_model
from spanet.layers import ScaledSoftmax


@pytest.fixture(scope="module")
def model_and_input(randomise_batchnorm):
    # Every layer type, with each attention normalisation, at a small width to stay quick.
    model = build_spanet(
        num_classes=4, input_shape=(32, 32, 1), width=0.25, r=0.4, norm="group", embedding_output=False
    )
    x = np.random.RandomState(0).uniform(size=(3, 32, 32, 1)).astype(np.float32)
    model.compile(optimizer=make_optimizer("nag", CosineAnnealing(1e-2, 1e-4, 10)), loss=CircleLoss())
    model.optimizer.build(model.trainable_variables)  # the optimizer's state is saved too
    randomise_batchnorm(model, seed=1)  # so that a BatchNorm statistic lost on reload would show
    assert np.all(np.isfinite(model(x, training=False).numpy()))
    return model, x


def test_keras_file_round_trip(tmp_path, model_and_input):
    model, x = model_and_input
    path = str(tmp_path / "spanet.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(
        reloaded(x, training=False).numpy(), model(x, training=False).numpy(), rtol=1e-5, atol=1e-6
    )
    assert reloaded.count_params() == model.count_params()
    assert isinstance(reloaded.loss, CircleLoss)
    schedule = reloaded.optimizer.get_config()["learning_rate"]
    assert schedule["class_name"].endswith("CosineAnnealing")
    assert schedule["config"] == model.optimizer.get_config()["learning_rate"]["config"]


def test_layer_configs_rebuild_identical_layers(model_and_input):
    model, _ = model_and_input
    for layer in model.layers:
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert clone.get_config() == config


def test_saved_model_serving_signature(tmp_path, model_and_input):
    model, x = model_and_input
    head = ScaledSoftmax(16.0)

    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 1], tf.float32, name="image")], autograph=False)
    def serve(image):
        p = head(model(image, training=False))
        return {"probabilities": p, "class_id": tf.argmax(p, axis=-1)}

    path = export_saved_model(str(tmp_path / "saved_model"), {"serving_default": serve}, models=[model])
    loaded = tf.saved_model.load(path)
    outputs = loaded.signatures["serving_default"](image=tf.constant(x))
    expected = head(model(x, training=False)).numpy()
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(outputs["class_id"].numpy(), expected.argmax(axis=-1))
    assert sorted(loaded.signatures["serving_default"].structured_outputs) == ["class_id", "probabilities"]


def test_a_keras_layer_kept_in_the_export_is_saved_without_its_call_functions(tmp_path):
    """A Keras layer kept for its weights or assets (as the TFT layer is) is not traced for Keras' own
    loader; the signatures answer, and the layer is left as it was."""
    from tensorflow.core.protobuf import saved_model_pb2

    layer = keras.layers.Dense(2, name="kept_dense")
    layer.build((None, 3))
    serve = tf.function(lambda x: {"y": layer(x)}, input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    path = export_saved_model(str(tmp_path / "model"), {"serving_default": serve}, kept=layer)
    assert layer._must_restore_from_config is False
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((tmp_path / "model" / "saved_model.pb").read_bytes())
    names = [f.signature.name for f in saved.meta_graphs[0].graph_def.library.function]
    assert not [name for name in names if "layer_call" in name], names
    x = np.ones((1, 3), np.float32)
    loaded = tf.saved_model.load(path)
    np.testing.assert_allclose(loaded.signatures["serving_default"](tf.constant(x))["y"].numpy(), layer(x).numpy())


def test_export_refuses_to_overwrite_and_leaves_nothing_on_failure(tmp_path, model_and_input):
    model, _ = model_and_input
    target = tmp_path / "exists"
    target.mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        export_saved_model(str(target), {})

    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 1], tf.float32)])
    def broken(image):
        return {"bad": tf.debugging.assert_equal(tf.shape(image)[0], -1) or model(image)}

    with pytest.raises(Exception):
        export_saved_model(
            str(tmp_path / "broken"), {"serving_default": broken}, models=[model], not_trackable=object()
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists"]
