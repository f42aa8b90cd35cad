"""Circle Loss (Sun et al. 2020; paper section III-E), class-level and pair-wise.

For positive similarities s_p and negative similarities s_n of one anchor:

    alpha_p = relu(1 + m - s_p),  alpha_n = relu(s_n + m)       (no gradient)
    delta_p = 1 - m,              delta_n = m
    L = softplus( logsumexp_n(gamma * alpha_n * (s_n - delta_n))
                + logsumexp_p(-gamma * alpha_p * (s_p - delta_p)) )

Both log-sum-exps and the softplus are evaluated in their stable forms, so the loss
and its gradient stay finite at any similarity in [-1, 1] and at gamma in the hundreds.

The multi-label form (``form="multilabel"``: a sample may have any number of patterns, none for a
normal wafer) adds one virtual class whose weighted logit is 0 on both sides, so that a sample needs
no positive (or no negative) to be trained:

    L = softplus(logsumexp_n(gamma * alpha_n * (s_n - delta_n)))
        + softplus(logsumexp_p(-gamma * alpha_p * (s_p - delta_p)))

which is the formula above with that class counted among both the positives and the negatives
(log((1 + A)(1 + B)) = softplus(log A) + softplus(log B)). Each pattern's decision is then a
threshold of its own similarity, midway between delta_n and delta_p.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

from spanet._keras import keras, register, tf
from spanet.calibration import SIGMOID_BOUNDARY
from spanet.layers.heads import safe_l2_normalize
from spanet.validation import check_choice, check_positive

#: The two label forms of Circle Loss.
FORMS = ("class", "pair", "multilabel")
#: The cosine at which a pattern of the multi-label form is as likely present as not: (delta_n + delta_p) / 2.
MULTILABEL_BOUNDARY = SIGMOID_BOUNDARY

# Stands in for -inf in masked log-sum-exps: exp() of it is exactly 0 in float32, and
# unlike -inf it never turns a fully masked row into NaN.
_MASKED = -1e9


def _weighted_logits(similarities, gamma: float, margin: float) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The positive and negative terms' weighted logits of every similarity, and the masking value."""
    similarities = tf.convert_to_tensor(similarities)
    dtype = similarities.dtype
    gamma = tf.cast(gamma, dtype)
    margin = tf.cast(margin, dtype)
    alpha_p = tf.stop_gradient(tf.nn.relu(1.0 + margin - similarities))
    alpha_n = tf.stop_gradient(tf.nn.relu(similarities + margin))
    logit_p = -gamma * alpha_p * (similarities - (1.0 - margin))
    logit_n = gamma * alpha_n * (similarities - margin)
    return logit_p, logit_n, tf.constant(_MASKED, dtype)


def circle_loss_from_similarities(
    similarities: tf.Tensor,
    positive_mask: tf.Tensor,
    negative_mask: tf.Tensor,
    gamma: float = 64.0,
    margin: float = 0.25,
) -> tf.Tensor:
    """Circle Loss of each row (anchor) of a similarity matrix.

    Args:
      similarities: (N, M) similarities in [-1, 1].
      positive_mask, negative_mask: (N, M) booleans selecting s_p and s_n of each row.
      gamma: the scale factor.
      margin: the relaxation margin m.

    Returns:
      (N,) losses; a row without any positive or any negative contributes 0.
    """
    logit_p, logit_n, masked = _weighted_logits(similarities, gamma, margin)
    lse_p = tf.reduce_logsumexp(tf.where(positive_mask, logit_p, masked), axis=-1)
    lse_n = tf.reduce_logsumexp(tf.where(negative_mask, logit_n, masked), axis=-1)
    valid = tf.logical_and(tf.reduce_any(positive_mask, axis=-1), tf.reduce_any(negative_mask, axis=-1))
    return tf.where(valid, tf.nn.softplus(lse_p + lse_n), tf.zeros_like(lse_p))


def multilabel_circle_loss(
    similarities: tf.Tensor, positive_mask: tf.Tensor, gamma: float = 64.0, margin: float = 0.25
) -> tf.Tensor:
    """Multi-label Circle Loss of each row: positives (patterns present) above 1 - m, the rest below m.

    A row with no positive (a normal wafer) or no negative is trained on the other side alone.
    """
    logit_p, logit_n, masked = _weighted_logits(similarities, gamma, margin)
    lse_p = tf.reduce_logsumexp(tf.where(positive_mask, logit_p, masked), axis=-1)
    lse_n = tf.reduce_logsumexp(tf.where(positive_mask, masked, logit_n), axis=-1)
    return tf.nn.softplus(lse_p) + tf.nn.softplus(lse_n)


def class_indices(y_true: tf.Tensor) -> tf.Tensor:
    """Integer labels from sparse (N,) / (N, 1) or one-hot (N, K > 1) targets."""
    y_true = tf.convert_to_tensor(y_true)
    if y_true.shape.rank == 2 and y_true.shape[-1] is not None and y_true.shape[-1] > 1:
        return tf.argmax(y_true, axis=-1, output_type=tf.int32)
    return tf.cast(tf.reshape(y_true, [-1]), tf.int32)


@register
class CircleLoss(keras.losses.Loss):
    """Circle Loss as a Keras loss.

    ``form="class"``: ``y_pred`` are cosine logits (N, K) from
    :class:`spanet.layers.CosineClassifier`; ``y_true`` are class ids (or one-hot).
    The similarity to the true class is s_p; the other K - 1 are s_n.

    ``form="pair"``: ``y_pred`` are embeddings (N, D) of one batch; ``y_true`` class
    ids. Each sample is an anchor: same-class samples are its positives, other-class
    samples its negatives (cosine similarity of the L2-normalised embeddings).

    ``form="multilabel"``: ``y_pred`` are cosine logits (N, P), one per pattern; ``y_true`` the
    multi-hot (N, P) patterns present (all zero for a normal wafer); see
    :func:`multilabel_circle_loss`.

    Sum the class and pair forms with a weight through Keras' ``loss_weights`` on a model built with
    ``embedding_output=True``.

    Keep the default reduction under a ``tf.distribute`` strategy: Keras then divides each replica's
    weighted mean by the replicas, so the summed gradients are those of the global batch's mean
    (``spanet.distribute``). The pair form pairs only the samples of one replica's share of a batch.
    """

    def __init__(
        self, gamma: float = 64.0, margin: float = 0.25, form: str = "class", name: str = "circle_loss", **kwargs
    ):
        super().__init__(name=name, **kwargs)
        self.gamma = check_positive("gamma", gamma)
        if not 0.0 <= float(margin) < 1.0:
            raise ValueError(f"margin must be a number in [0, 1); got {margin!r}")
        self.margin = float(margin)
        self.form = check_choice("form", form, FORMS)

    def call(self, y_true, y_pred):
        y_pred = tf.convert_to_tensor(y_pred)
        if self.form == "multilabel":
            present = tf.reshape(tf.cast(y_true, y_pred.dtype), tf.shape(y_pred)) > 0.5
            return multilabel_circle_loss(y_pred, present, self.gamma, self.margin)
        labels = class_indices(y_true)
        if self.form == "class":
            num_classes = int(y_pred.shape[-1])
            positive = tf.one_hot(labels, num_classes, on_value=True, off_value=False)
            similarities = y_pred
            negative = tf.logical_not(positive)
        else:
            embeddings = safe_l2_normalize(y_pred, axis=-1)
            similarities = tf.matmul(embeddings, embeddings, transpose_b=True)
            same = tf.equal(labels[:, None], labels[None, :])
            not_self = tf.logical_not(tf.eye(tf.shape(labels)[0], dtype=tf.bool))
            positive = tf.logical_and(same, not_self)
            negative = tf.logical_not(same)
        return circle_loss_from_similarities(similarities, positive, negative, self.gamma, self.margin)

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(gamma=self.gamma, margin=self.margin, form=self.form)
        return config
