"""Per-class precision-recall curves and the reliability (calibration) diagram's numbers, from the
exported model's probabilities on the test split (scikit-learn's curve functions; no TFX).

Reliability is shown for the two probabilities a user reads: the predicted class's (top-class
confidence against accuracy; multi-label: every pattern probability against its truth) and the
defect probability 1 - P(normal) against being defective. The expected calibration error (ECE) is
the count-weighted mean gap between confidence and accuracy over equal-width bins.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve

#: Equal-width confidence bins of the reliability diagram.
CALIBRATION_BINS = 10
#: Points kept per precision-recall curve (enough for a plot; the JSON holds the average precision).
MAX_CURVE_POINTS = 200


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = CALIBRATION_BINS) -> Dict[str, Any]:
    """Per equal-width bin of ``confidence``: mean confidence, observed accuracy, count; and the ECE."""
    confidence, correct = np.asarray(confidence, float).reshape(-1), np.asarray(correct, float).reshape(-1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    rows = {"bin_low": [], "bin_high": [], "confidence": [], "accuracy": [], "count": []}
    gap = 0.0
    for b in range(bins):
        inside = which == b
        count = int(inside.sum())
        if not count:
            continue
        mean_confidence, accuracy = float(confidence[inside].mean()), float(correct[inside].mean())
        for key, value in zip(rows, (edges[b], edges[b + 1], mean_confidence, accuracy, count)):
            rows[key].append(float(value) if key != "count" else value)
        gap += count * abs(accuracy - mean_confidence)
    return {**rows, "ece": gap / max(len(confidence), 1), "examples": int(len(confidence))}


def _thinned(*columns: np.ndarray) -> List[List[float]]:
    """The same rows of each column: every k-th point and the last, at most about MAX_CURVE_POINTS."""
    count = len(columns[0])
    rows = list(range(0, count, max(1, int(np.ceil(count / MAX_CURVE_POINTS)))))
    if count and rows[-1] != count - 1:
        rows.append(count - 1)
    return [[float(column[r]) for r in rows] for column in columns]


def split_curves(
    probabilities: np.ndarray,
    truth: np.ndarray,
    class_names: Sequence[str],
    normal_class: str,
    multilabel: bool = False,
    order: Sequence[int] = (),
) -> Dict[str, Any]:
    """The curves' numbers: ``average_precision`` and ``points`` (precision / recall lists) per class that
    has a positive test wafer, in ``order``; ``calibration`` for the predicted class and the defect flag."""
    probabilities, truth = np.asarray(probabilities, float), np.asarray(truth, int)
    if not len(probabilities):
        return {}
    order = list(order) or list(range(len(class_names)))
    average_precision, points = {}, {}
    for j in order:
        if truth[:, j].sum() == 0:
            continue  # no positive test wafer: the curve is undefined
        precision, recall, _ = precision_recall_curve(truth[:, j], probabilities[:, j])
        average_precision[class_names[j]] = float(average_precision_score(truth[:, j], probabilities[:, j]))
        kept_precision, kept_recall = _thinned(precision[::-1], recall[::-1])
        points[class_names[j]] = {"precision": kept_precision, "recall": kept_recall}
    if multilabel:
        predicted = reliability(probabilities.reshape(-1), truth.reshape(-1))
        defect_probability = probabilities.max(axis=1)
        defective = truth.max(axis=1)
    else:
        top = probabilities.argmax(axis=1)
        predicted = reliability(probabilities.max(axis=1), top == truth.argmax(axis=1))
        normal = list(class_names).index(normal_class)
        defect_probability = 1.0 - probabilities[:, normal]
        defective = 1 - truth[:, normal]
    # The defect probability's reliability is read as "how often a wafer given p is defective".
    return {
        "average_precision": average_precision,
        "points": points,
        "calibration": {
            "predicted_class" if not multilabel else "patterns": predicted,
            "defect": reliability(defect_probability, defective),
        },
    }


__all__ = ["reliability", "split_curves", "CALIBRATION_BINS"]
