"""Calibrated probabilities from cosine logits: temperature scaling on held-out data.

Circle Loss trains the cosine logits with a large scale (gamma = 64); ``softmax(64 * cos)``
is over-confident. The scale that minimises the negative log-likelihood of held-out
labels (Guo et al. 2017) gives probabilities whose confidence matches accuracy. Multi-label
models get one sigmoid per pattern, ``sigmoid(scale * (cos - 0.5))``, scaled the same way.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

#: The cosine at which a multi-label pattern is as likely present as not: midway between Circle
#: Loss's delta_n = m and delta_p = 1 - m, whatever the margin (spanet.losses' multi-label form).
SIGMOID_BOUNDARY = 0.5


def softmax_probabilities(cosines: np.ndarray, scale: float) -> np.ndarray:
    """``softmax(scale * cos)`` row by row, computed stably."""
    logits = scale * np.asarray(cosines, dtype=np.float64)
    logits -= logits.max(axis=-1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=-1, keepdims=True)


def negative_log_likelihood(cosines: np.ndarray, labels: np.ndarray, scale: float) -> float:
    """Mean NLL of the true labels under ``softmax(scale * cos)``."""
    probabilities = softmax_probabilities(cosines, scale)
    picked = probabilities[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0))))


def sigmoid_probabilities(cosines: np.ndarray, scale: float) -> np.ndarray:
    """Per-pattern ``sigmoid(scale * (cos - 0.5))`` of multi-label cosine logits."""
    return 1.0 / (1.0 + np.exp(-scale * (np.asarray(cosines, dtype=np.float64) - SIGMOID_BOUNDARY)))


def binary_negative_log_likelihood(cosines: np.ndarray, multi_hot: np.ndarray, scale: float) -> float:
    """Mean binary NLL, over samples and patterns, of multi-hot labels under :func:`sigmoid_probabilities`."""
    p = np.clip(sigmoid_probabilities(cosines, scale), 1e-12, 1.0 - 1e-12)
    y = np.asarray(multi_hot, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p)))


def _golden_section(loss: Callable[[float], float], low: float, high: float) -> float:
    """The scale in [low, high] minimising ``loss`` (golden-section search on log-scale)."""
    a, b = np.log(low), np.log(high)
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    for _ in range(60):
        if loss(np.exp(c)) < loss(np.exp(d)):
            b, d = d, c
            c = b - ratio * (b - a)
        else:
            a, c = c, d
            d = a + ratio * (b - a)
    return float(np.exp((a + b) / 2.0))


def fit_temperature(cosines: np.ndarray, labels: np.ndarray, low: float = 1.0, high: float = 128.0) -> float:
    """The softmax scale in [low, high] with the lowest held-out NLL."""
    cosines = np.asarray(cosines, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if cosines.ndim != 2 or len(cosines) != len(labels) or len(labels) == 0:
        raise ValueError(f"cosines must be (N, K) and labels (N,) with N > 0; got {cosines.shape} and {labels.shape}")
    return _golden_section(lambda scale: negative_log_likelihood(cosines, labels, scale), low, high)


def fit_sigmoid_temperature(cosines: np.ndarray, multi_hot: np.ndarray, low: float = 1.0, high: float = 128.0) -> float:
    """The per-pattern sigmoid scale in [low, high] with the lowest held-out binary NLL."""
    cosines = np.asarray(cosines, dtype=np.float64)
    multi_hot = np.asarray(multi_hot, dtype=np.float64)
    if cosines.ndim != 2 or cosines.shape != multi_hot.shape or len(cosines) == 0:
        raise ValueError(
            f"cosines and multi-hot labels must both be (N, P) with N > 0; got {cosines.shape} and {multi_hot.shape}"
        )
    return _golden_section(lambda scale: binary_negative_log_likelihood(cosines, multi_hot, scale), low, high)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE: the gap between confidence and accuracy, averaged over confidence bins."""
    probabilities = np.asarray(probabilities)
    confidence = probabilities.max(axis=-1)
    correct = probabilities.argmax(axis=-1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    error = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            error += in_bin.mean() * abs(confidence[in_bin].mean() - correct[in_bin].mean())
    return float(error)
