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


def _multilabel_numpy(cos, present, gamma, m):
    """The multi-label form term by term: positives vs a virtual zero-logit class, and negatives vs it."""
    cos, present = np.asarray(cos, np.float64), np.asarray(present, bool)
    ap = np.maximum(1 + m - cos, 0)
    an = np.maximum(cos + m, 0)
    pos = np.sum(np.exp(-gamma * ap * (cos - (1 - m)))[present])
    neg = np.sum(np.exp(gamma * an * (cos - m))[~present])
    return np.log1p(pos) + np.log1p(neg)


@pytest.mark.parametrize("gamma, margin", [(64.0, 0.25), (8.0, 0.1)])
def test_multilabel_form_matches_numpy_for_none_one_and_several_patterns(gamma, margin):
    rng = np.random.RandomState(3)
    cos = rng.uniform(-0.2, 0.9, size=(4, 3)).astype(np.float32)
    present = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]], np.float32)
    loss = CircleLoss(gamma, margin, form="multilabel", reduction="none")(present, cos).numpy()
    expected = [_multilabel_numpy(c, p, gamma, margin) for c, p in zip(cos, present)]
    np.testing.assert_allclose(loss, expected, rtol=1e-4, atol=1e-4)
    assert np.all(loss > 0)  # a normal wafer (no pattern) is trained too, unlike the pair-only form


def test_multilabel_form_is_small_only_when_present_patterns_are_above_and_absent_ones_below_the_boundary():
    present = np.array([[0, 0], [1, 0], [1, 1]], np.float32)
    decided = np.array([[0.1, 0.0], [0.9, 0.1], [0.9, 0.8]], np.float32)
    wrong = np.array([[0.6, 0.1], [0.4, 0.1], [0.9, 0.45]], np.float32)
    loss = CircleLoss(form="multilabel", reduction="none")
    assert np.all(loss(present, decided).numpy() < 0.3)
    assert np.all(loss(present, wrong).numpy() > 5.0)


def test_multilabel_form_gradient_is_finite_at_the_extremes():
    cos = tf.Variable(np.array([[1.0, -1.0], [-1.0, 1.0]], np.float32))
    with tf.GradientTape() as tape:
        value = CircleLoss(gamma=256.0, form="multilabel")(np.array([[0, 1], [0, 0]], np.float32), cos)
    gradient = tape.gradient(value, cos).numpy()
    assert np.isfinite(value.numpy()) and np.all(np.isfinite(gradient))
