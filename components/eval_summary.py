"""The Evaluator's results as plain numbers: gate metrics per slice, and class metrics from the confusion matrix.

Per-class precision / recall / F1, macro-F1 and accuracy are derived from TFMA's
multi-class confusion matrix (arg-max predictions), so they agree with each other and
with the matrix a report draws.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import tensorflow_model_analysis as tfma

from components.config import DEFECT_SCORE, PROBABILITIES


def _slice_name(slice_key) -> str:
    if not slice_key:
        return "overall"
    return ", ".join(f"{k}={v.decode() if isinstance(v, bytes) else v}" for k, v in slice_key)


def _metric_value(value) -> Optional[float]:
    """The number in a TFMA metric value (double, or the point estimate of a bounded value)."""
    if isinstance(value, dict):
        for key in ("doubleValue", "boundedValue"):
            if key in value:
                inner = value[key]
                return float(inner["value"] if isinstance(inner, dict) else inner)
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def class_metrics_from_confusion(matrix: np.ndarray, class_names: Sequence[str]) -> Dict[str, Any]:
    """Accuracy, per-class precision / recall / F1 / support and macro-F1 from a K x K matrix (rows: truth)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    true_positive = np.diag(matrix)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, true_positive / predicted, 0.0)
        recall = np.where(support > 0, true_positive / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = support > 0
    per_class = {
        name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
        for i, name in enumerate(class_names)
    }
    return {
        "accuracy": float(true_positive.sum() / matrix.sum()) if matrix.sum() else float("nan"),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "per_class": per_class,
    }


def confusion_matrix_from_plot(plot: Dict[str, Any], num_classes: int) -> np.ndarray:
    """The arg-max confusion matrix from TFMA's MultiClassConfusionMatrixPlot (as a dict)."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    plot_data = plot.get("multiClassConfusionMatrixAtThresholds", {})
    matrices = plot_data.get("matrices", [])
    if not matrices:
        return matrix
    for entry in matrices[0].get("entries", []):
        actual = int(entry.get("actualClassId", 0))
        predicted = int(entry.get("predictedClassId", 0))
        if 0 <= actual < num_classes and 0 <= predicted < num_classes:
            matrix[actual, predicted] += int(float(entry.get("numWeightedExamples", 0)))
    return matrix


def summarize_evaluation(evaluator_output_uri: str, class_names: Sequence[str]) -> Dict[str, Any]:
    """Gate metrics for every slice, class metrics overall, and the validation verdict."""
    from google.protobuf import json_format

    metrics = tfma.load_metrics(evaluator_output_uri)
    slices: Dict[str, Dict[str, float]] = {}
    for record in metrics:
        name = _slice_name(tfma.slicer.deserialize_slice_key(record.slice_key))
        values = slices.setdefault(name, {})
        for key_and_value in record.metric_keys_and_values:
            key = key_and_value.key
            if key.model_name and key.is_diff:
                continue
            if key.is_diff:
                continue
            number = _metric_value(json_format.MessageToDict(key_and_value.value))
            if number is not None:
                output = key.output_name or ""
                values[f"{output}/{key.name}" if output else key.name] = number

    matrix = np.zeros((len(class_names), len(class_names)), dtype=np.int64)
    for record in tfma.load_plots(evaluator_output_uri):
        if tfma.slicer.deserialize_slice_key(record.slice_key):
            continue
        for key_and_value in record.plot_keys_and_values:
            if key_and_value.key.output_name == PROBABILITIES:
                plot = json_format.MessageToDict(key_and_value.value)
                matrix = confusion_matrix_from_plot(plot, len(class_names))

    validation = tfma.load_validation_result(evaluator_output_uri)
    failures: List[str] = []
    for failure in validation.metric_validations_per_slice:
        slice_name = _slice_name(tfma.slicer.deserialize_slice_key(failure.slice_key))
        for item in failure.failures:
            failures.append(f"{slice_name}: {item.metric_key.name} = {item.metric_value.double_value.value:.4f} fails {item.metric_threshold}".replace("\n", " "))
    for spec in validation.missing_slices:
        failures.append(f"missing slice {spec}".replace("\n", " "))

    overall = slices.get("overall", {})
    return {
        "defect_recall": overall.get(f"{DEFECT_SCORE}/defect_recall"),
        "false_alarm_rate": overall.get(f"{DEFECT_SCORE}/false_alarm_rate"),
        "defect_precision": overall.get(f"{DEFECT_SCORE}/defect_precision"),
        "confusion_matrix": matrix.tolist(),
        "class_names": list(class_names),
        **class_metrics_from_confusion(matrix, class_names),
        "slices": slices,
        "validation_ok": bool(validation.validation_ok),
        "validation_failures": failures,
        "evaluator_output": os.path.abspath(evaluator_output_uri) if "://" not in evaluator_output_uri else evaluator_output_uri,
    }
