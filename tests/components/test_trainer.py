"""The Trainer's helpers: balanced class weights and orientation augmentation."""

import numpy as np
import pytest
import tensorflow as tf

from components.config import TrainingConfig
from components.trainer import augment, class_weights


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


def test_augmentation_only_reorients():
    images = tf.constant(np.random.RandomState(0).uniform(size=(4, 6, 6, 1)).astype(np.float32))
    out = augment(images, seed=1).numpy()
    assert out.shape == (4, 6, 6, 1)
    for before, after in zip(images.numpy(), out):
        orientations = [np.rot90(v, k) for v in (before, before[:, ::-1]) for k in range(4)]
        assert any(np.array_equal(after, o) for o in orientations)
