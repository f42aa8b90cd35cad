"""Circle Loss against a direct NumPy evaluation of the formula, and its stability."""

import numpy as np
import pytest

from spanet import CircleLoss
from spanet._keras import tf


def _softplus(x):
    return np.log1p(np.exp(-abs(x))) + max(x, 0.0)


def _circle_numpy(sp, sn, gamma, m):
    """The paper's formula, term by term, in float64."""
    sp, sn = np.asarray(sp, np.float64), np.asarray(sn, np.float64)
    ap = np.maximum(1 + m - sp, 0)
    an = np.maximum(sn + m, 0)
    neg = np.log(np.sum(np.exp(gamma * an * (sn - m))))
    pos = np.log(np.sum(np.exp(-gamma * ap * (sp - (1 - m)))))
    return _softplus(neg + pos)


@pytest.mark.parametrize("gamma, margin", [(64.0, 0.25), (32.0, 0.4), (1.0, 0.1)])
def test_class_level_matches_numpy(gamma, margin):
    rng = np.random.RandomState(0)
    cos = rng.uniform(-0.3, 0.6, size=(6, 5)).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 4, 1])
    loss = CircleLoss(gamma, margin, form="class", reduction="none")(labels, cos).numpy()
    expected = [_circle_numpy([c[y]], np.delete(c, y), gamma, margin) for c, y in zip(cos, labels)]
    np.testing.assert_allclose(loss, expected, rtol=1e-4, atol=1e-4)
    one_hot = np.eye(5, dtype=np.float32)[labels]
    np.testing.assert_allclose(CircleLoss(gamma, margin, reduction="none")(one_hot, cos).numpy(), loss, rtol=1e-6)


def test_pair_wise_matches_numpy():
    rng = np.random.RandomState(1)
    emb = rng.normal(size=(8, 4)).astype(np.float32)
    labels = np.array([0, 0, 1, 1, 2, 2, 0, 3])
    loss = CircleLoss(form="pair", reduction="none")(labels, emb).numpy()
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = unit @ unit.T
    for i, y in enumerate(labels):
        pos = [sim[i, j] for j in range(8) if j != i and labels[j] == y]
        neg = [sim[i, j] for j in range(8) if labels[j] != y]
        expected = _circle_numpy(pos, neg, 64.0, 0.25) if pos else 0.0  # label 3 has no positive
        assert loss[i] == pytest.approx(expected, rel=1e-4, abs=1e-4)
    assert loss[7] == 0.0


def test_loss_orders_good_and_bad_predictions():
    labels = np.array([0, 1])
    good = np.array([[0.95, -0.1, 0.0], [0.0, 0.9, -0.2]], np.float32)
    bad = np.array([[-0.2, 0.9, 0.0], [0.9, 0.0, 0.1]], np.float32)
    loss = CircleLoss()
    assert float(loss(labels, good)) < 0.01 < 10.0 < float(loss(labels, bad))


@pytest.mark.parametrize("value", [-1.0, 1.0])
@pytest.mark.parametrize("gamma", [64.0, 512.0])
def test_finite_loss_and_gradients_at_extreme_similarities(value, gamma):
    cos = tf.Variable(np.full((4, 9), value, np.float32))
    labels = np.array([0, 3, 5, 8])
    with tf.GradientTape() as tape:
        loss = CircleLoss(gamma=gamma)(labels, cos)
    grad = tape.gradient(loss, cos)
    assert np.isfinite(loss.numpy()) and np.all(np.isfinite(grad.numpy()))
    emb = tf.Variable(np.ones((4, 3), np.float32))  # identical embeddings: similarities exactly 1
    with tf.GradientTape() as tape:
        loss = CircleLoss(gamma=gamma, form="pair")(np.array([0, 0, 1, 1]), emb)
    grad = tape.gradient(loss, emb)
    assert np.isfinite(loss.numpy()) and np.all(np.isfinite(grad.numpy()))


def test_gradient_pushes_positive_up_and_negatives_down():
    cos = tf.Variable([[0.2, 0.3, 0.1]])
    with tf.GradientTape() as tape:
        loss = CircleLoss()(np.array([0]), cos)
    grad = tape.gradient(loss, cos).numpy()[0]
    assert grad[0] < 0 and grad[1] > 0 and grad[2] > 0


def test_bad_loss_arguments():
    with pytest.raises(ValueError, match="gamma must be a number > 0"):
        CircleLoss(gamma=0)
    with pytest.raises(ValueError, match=r"margin must be a number in \[0, 1\)"):
        CircleLoss(margin=1.5)
    with pytest.raises(ValueError, match="form must be one of 'class', 'pair'"):
        CircleLoss(form="triplet")
