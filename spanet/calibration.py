"""Calibrated probabilities from cosine logits: temperature scaling on held-out data.

Circle Loss trains the cosine logits with a large scale (gamma = 64); ``softmax(64 * cos)``
is over-confident. The scale that minimises the negative log-likelihood of held-out
labels (Guo et al. 2017) gives probabilities whose confidence matches accuracy.
"""

from __future__ import annotations

import numpy as np


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


def fit_temperature(cosines: np.ndarray, labels: np.ndarray, low: float = 1.0, high: float = 128.0) -> float:
    """The scale in [low, high] with the lowest held-out NLL (golden-section search on log-scale)."""
    cosines = np.asarray(cosines, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if cosines.ndim != 2 or len(cosines) != len(labels) or len(labels) == 0:
        raise ValueError(f"cosines must be (N, K) and labels (N,) with N > 0; got {cosines.shape} and {labels.shape}")
    a, b = np.log(low), np.log(high)
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    for _ in range(60):
        if negative_log_likelihood(cosines, labels, np.exp(c)) < negative_log_likelihood(cosines, labels, np.exp(d)):
            b, d = d, c
            c = b - ratio * (b - a)
        else:
            a, c = c, d
            d = a + ratio * (b - a)
    return float(np.exp((a + b) / 2.0))


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
