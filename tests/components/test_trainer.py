"""The Trainer's helpers: balanced class weights, its augmentation recipe, its input pipeline on raw examples."""

import numpy as np
import pytest
import tensorflow as tf

from components import features
from components.config import ImageConfig, TrainingConfig
from components.trainer import class_weights, make_dataset, read_labels
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
    assert first[0].shape == (2, 8, 8, 1) and float(tf.reduce_max(first[0])) <= 1.0
    # The autotuner's sleeping thread would hold up the end of every epoch's validation pass.
    assert evaluation.options().autotune.enabled is False and train.options().autotune.enabled is False


def test_augmentation_follows_the_recipe():
    assert TrainingConfig(augment=False).augment_config() is None
    quarter = TrainingConfig(augment_any_angle=False, augment_die_noise=False).augment_config()
    assert quarter.rotate is False and quarter.max_pass_to_fail == 0.0 and quarter.max_fail_to_pass == 0.0
    assert TrainingConfig(augment_any_angle=True).augment_config().rotate is True
