"""The Trainer's helpers: balanced class weights, its augmentation recipe, its input pipeline on raw examples;
its learning rate on several replicas, and fit / calibrate / export on two (MirroredStrategy over two logical
CPUs, in a subprocess: see tests/two_replicas.py)."""

import runpy
from pathlib import Path
from typing import Tuple

import numpy as np
import pytest
import tensorflow as tf

from components import features
from components.config import ImageConfig, TrainingConfig
from components.trainer import class_weights, learning_rate_for, make_dataset, read_labels
from components.transform import decode_and_resize
from spanet.data.imageio import encode_png


def test_balanced_weights_are_inverse_frequency_and_clipped():
    labels = np.array([0] * 85 + [1] * 10 + [2] * 5)  # 85% normal, as on real fab data
    weights = class_weights(labels, 4, TrainingConfig(max_class_weight=5.0))
    assert weights[0] == pytest.approx(100 / (3 * 85))
    assert weights[1] == pytest.approx(100 / (3 * 10))
    assert weights[2] == 5.0  # 100 / 15 = 6.7, clipped to max_class_weight
    assert weights[3] == 1.0  # absent class: neutral
    heavy = class_weights(np.array([0] * 999 + [1]), 2, TrainingConfig(max_class_weight=5.0))
    assert heavy[1] == 5.0 and heavy[0] == pytest.approx(1000 / (2 * 999))


def test_no_weighting():
    np.testing.assert_array_equal(class_weights(np.array([0, 0, 1]), 2, TrainingConfig(class_weighting="none")), [1, 1])


def _write_raw_examples(path, images, labels):
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for image, label in zip(images, labels):
            writer.write(
                tf.train.Example(
                    features=tf.train.Features(
                        feature={
                            features.IMAGE_KEY: tf.train.Feature(
                                bytes_list=tf.train.BytesList(value=[encode_png(image)])
                            ),
                            features.LABEL_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[label.encode()])),
                        }
                    )
                ).SerializeToString()
            )


def test_dataset_batches_weights_and_turns_autotuning_off(tmp_path):
    path = str(tmp_path / "examples.gz")
    rng = np.random.default_rng(0)
    images = [rng.choice(np.array([0, 128, 255], np.uint8), size=(20 + i, 30)) for i in range(5)]
    labels = ["Center", "none", "none", "Center", "none"]
    _write_raw_examples(path, images, labels)
    names = ["none", "Center"]
    image = ImageConfig(height=8, width=8)
    weights = np.array([0.5, 2.0], np.float32)
    np.testing.assert_array_equal(read_labels([path], names), [1, 0, 0, 1, 0])
    evaluation = make_dataset([path], names, image, 2, False, weights, TrainingConfig(), len(labels))
    batches = list(evaluation.as_numpy_iterator())
    assert [len(b[0]) for b in batches] == [2, 2, 1] and int(evaluation.cardinality()) == 3
    # Evaluation images are exactly what the exported model's Transform graph makes of the same bytes.
    expected = decode_and_resize(tf.constant([encode_png(i) for i in images]), image).numpy()
    np.testing.assert_allclose(np.concatenate([b[0] for b in batches]), expected, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([b[2] for b in batches]), weights[[1, 0, 0, 1, 0]])
    train = make_dataset([path], names, image, 2, True, weights, TrainingConfig(), len(labels))
    assert int(train.cardinality()) == tf.data.INFINITE_CARDINALITY
    first = next(iter(train))
    assert first[0].shape == (2, 8, 8, image.input_channels) and float(tf.reduce_max(first[0])) <= 1.0
    # The autotuner's sleeping thread would hold up the end of every epoch's validation pass.
    assert evaluation.options().autotune.enabled is False and train.options().autotune.enabled is False


def test_augmentation_follows_the_recipe():
    assert TrainingConfig(augment=False).augment_config() is None
    quarter = TrainingConfig(augment_any_angle=False, augment_die_noise=False).augment_config()
    assert quarter.rotate is False and quarter.max_pass_to_fail == 0.0 and quarter.max_fail_to_pass == 0.0
    assert TrainingConfig(augment_any_angle=True).augment_config().rotate is True


def test_learning_rate_for_scales_to_the_global_batch():
    from spanet import CosineAnnealing
    from spanet.optim import make_learning_rate

    config = TrainingConfig(learning_rate=0.01, final_learning_rate=1e-4, warmup_epochs=0, batch_size=32)
    one, callbacks = learning_rate_for(config, 1, steps_per_epoch=10, epochs=5)
    expected, _ = make_learning_rate("cosine", 0.01, 1e-4, total_steps=50, warmup_steps=0)
    assert one.get_config() == expected.get_config() and callbacks == []  # one replica: as configured
    four, _ = learning_rate_for(config, 4, steps_per_epoch=10, epochs=5)
    assert isinstance(four, CosineAnnealing)
    assert four.initial_learning_rate == pytest.approx(0.04) and four.final_learning_rate == pytest.approx(4e-4)
    assert four.warmup_steps == 10  # scaled up: at least one epoch of warm-up
    adam, _ = learning_rate_for(TrainingConfig(optimizer="adam", learning_rate=1e-3), 4, 10, 5)
    assert adam.initial_learning_rate == pytest.approx(2e-3)  # Adam: the square root
    constant = TrainingConfig(schedule="constant", learning_rate=0.01)
    assert learning_rate_for(constant, 1, 10, 5)[0] == 0.01
    warmed, _ = learning_rate_for(constant, 2, 10, 5)  # a warmed-up constant
    assert warmed.initial_learning_rate == warmed.final_learning_rate == pytest.approx(0.02)
    assert float(warmed(0)) < 0.02 and float(warmed(30)) == pytest.approx(0.02)


# The replicated Trainer, run by tests/two_replicas.py on two logical CPUs.
run_on_two_replicas = runpy.run_path(str(Path(__file__).resolve().parents[1] / "two_replicas.py"))[
    "run_on_two_replicas"
]
NORMAL = "none"


def _separable(count: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """uint8 16x16 wafer-like maps of three classes (a disc, a ring, clean: the majority) and their ids."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[:16, :16]
    radius = np.hypot(yy - 7.5, xx - 7.5)
    labels = rng.choice(3, size=count, p=[0.25, 0.25, 0.5])
    images = rng.uniform(0, 60, size=(count, 16, 16))
    images[labels == 0] += (radius < 4)[None] * 180
    images[labels == 1] += (radius > 6)[None] * 180
    return images.astype(np.uint8), labels


class _TransformOutput:
    """Stands in for the TFTransformOutput the Trainer exports with: the real decode and resize, zero labels."""

    def __init__(self, image: ImageConfig):
        self.image = image

    def transform_features_layer(self):
        from components.config import IMAGE_XF, IS_DEFECT_XF, LABEL_XF

        image = self.image

        class Layer(tf.Module):
            def __call__(self, inputs):
                pixels = decode_and_resize(inputs[features.IMAGE_KEY], image)
                zeros = tf.zeros(tf.shape(pixels)[:1], tf.int64)
                return {IMAGE_XF: pixels, LABEL_XF: zeros, IS_DEFECT_XF: zeros}

        return Layer()

    def raw_feature_spec(self):
        return {key: tf.io.FixedLenFeature([1], tf.string) for key in (features.IMAGE_KEY, features.LABEL_KEY)}


def _export(model, path: str, image: ImageConfig) -> dict:
    """Exports as the Trainer does; the loaded signatures' input and output specs and answers on test images."""
    from components.serving import ServingModel, export_serving_model

    serving = ServingModel(model, _TransformOutput(image), ["Center", "Edge-Ring", NORMAL], 2, 5.0, 0.5, 0.1)
    export_serving_model(path, serving)
    loaded = tf.saved_model.load(path)

    def specs(structure):
        return {name: [spec.dtype.name, spec.shape.as_list()] for name, spec in structure.items()}

    signatures = {
        name: {"inputs": specs(function.structured_input_signature[1]), "outputs": specs(function.structured_outputs)}
        for name, function in loaded.signatures.items()
    }
    images = tf.constant([encode_png(i) for i in _separable(4, seed=3)[0]])
    answers = loaded.signatures["explain"](images=images)
    keys = ("probabilities", "familiarity", "defect_score", "explanation")
    return {"signatures": signatures, **{key: answers[key].numpy().tolist() for key in keys}}


def _small_spanet():
    from spanet import build_spanet
    from spanet.models.spanet import BlockSpec

    blocks = (BlockSpec(3, 2, 16, 16), BlockSpec(3, 2, 32, 24))
    return build_spanet(3, (16, 16, 1), width=0.25, blocks=blocks)


def replicated_fit_and_calibrate() -> dict:
    """The Trainer's fit (class-weighted, precise BN validation) and calibration on a two-replica MirroredStrategy."""
    import tempfile

    from components import trainer
    from spanet import distribute

    strategy = distribute.choose_strategy("", device_type="CPU")
    config = TrainingConfig(
        batch_size=16, epochs=3, learning_rate=0.02, batchnorm_recalibration_batches=2, test_time_orientations=2
    )
    batch = distribute.global_batch_size(config.batch_size, distribute.replicas(strategy))
    train_images, train_labels = _separable(192, seed=0)
    eval_images, eval_labels = _separable(64, seed=1)
    weights = class_weights(train_labels, 3, config)

    def inputs(images):
        return images[..., None].astype(np.float32) / 255.0

    train = tf.data.Dataset.from_tensor_slices((inputs(train_images), train_labels, weights[train_labels]))
    train = train.shuffle(192, seed=0).repeat().batch(batch)  # the global batch
    evaluation = tf.data.Dataset.from_tensor_slices((inputs(eval_images), eval_labels, np.ones(64, np.float32)))
    evaluation = evaluation.batch(batch)
    tf.keras.utils.set_random_seed(0)
    with strategy.scope():
        model = _small_spanet()
    steps = 192 // batch
    history = trainer.fit(model, train, evaluation, config, tempfile.mkdtemp(), steps, config.epochs)
    _, point, quality, _ = trainer.calibrate(model, evaluation, 2, trainer.statistics_of(evaluation), config)
    return {
        "replicas": distribute.replicas(model.distribute_strategy),
        "variable": type(model.variables[0]).__name__,
        "learning_rate": model.optimizer.get_config()["learning_rate"]["config"]["initial_learning_rate"],
        "loss": history.history["loss"],
        "val_loss": history.history["val_loss"],
        "eval_accuracy": quality["eval_accuracy"],
        "defect_recall": point.defect_recall,
    }


def test_trainer_fits_and_calibrates_on_two_replicas():
    result = run_on_two_replicas(__file__, "replicated_fit_and_calibrate")
    print(f"replicated Trainer: {result}")
    assert result["replicas"] == 2 and result["variable"] == "MirroredVariable"
    assert result["learning_rate"] == pytest.approx(0.04)  # scaled to the global batch of 2 x 16
    assert result["loss"][-1] < 0.5 * result["loss"][0] and result["val_loss"][-1] < result["loss"][0]
    assert result["eval_accuracy"] > 0.9 and result["defect_recall"] > 0.9


def replicated_and_single_exports() -> dict:
    """The Trainer's export of a model built under a two-replica MirroredStrategy, and of its single-device copy."""
    import tempfile

    from spanet import distribute
    from spanet.batchnorm import batchnorm_layers

    strategy = distribute.choose_strategy("", device_type="CPU")
    tf.keras.utils.set_random_seed(0)
    with strategy.scope():
        model = _small_spanet()
    # As training leaves them: each replica with BatchNorm statistics of its own share of the batches.
    rng = np.random.RandomState(0)
    for layer in batchnorm_layers(model):
        for copy in layer.moving_mean.values:
            copy.assign(rng.normal(0.0, 0.5, copy.shape))
        for copy in layer.moving_variance.values:
            copy.assign(rng.uniform(0.5, 2.0, copy.shape))
    single = _small_spanet()
    single.set_weights(model.get_weights())  # the replicas' mean, which serving must use
    folder = tempfile.mkdtemp()
    image = ImageConfig(height=16, width=16, max_channel=False, support_channel=False)  # _small_spanet: one channel
    return {
        "variable": type(model.variables[0]).__name__,
        "mirrored": _export(model, f"{folder}/mirrored", image),
        "single": _export(single, f"{folder}/single", image),
    }


def test_export_of_a_replicated_model_matches_the_single_device_export():
    result = run_on_two_replicas(__file__, "replicated_and_single_exports")
    mirrored, single = result["mirrored"], result["single"]
    assert result["variable"] == "MirroredVariable"
    assert sorted(mirrored["signatures"]) == ["explain", "serving_default", "serving_examples", "transform_features"]
    assert mirrored["signatures"] == single["signatures"]
    for key in ("probabilities", "familiarity", "defect_score", "explanation"):
        np.testing.assert_allclose(mirrored[key], single[key], atol=1e-5, err_msg=key)


def test_phase_timing_counts_the_first_epochs_excess_as_graph_building():
    from components.trainer import phase_timing

    timing = phase_timing([30.0, 8.0, 9.0, 7.5], calibration_seconds=12.34)
    assert timing == {
        "fit": 54.5,
        "first_epoch": 30.0,
        "median_epoch": 8.0,
        "graph_building": 22.0,
        "calibration": 12.3,
    }
    assert phase_timing([5.0], 0.0)["graph_building"] == 0.0  # one epoch: nothing to compare with
