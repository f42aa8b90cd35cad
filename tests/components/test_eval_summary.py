"""Class metrics from the confusion matrix, and the gate's configuration."""

import numpy as np
import pytest

from components.eval_summary import class_metrics_from_confusion, confusion_matrix_from_plot
from components.evaluation import DEFECT_RECALL, FALSE_ALARM_RATE, GateConfig, build_eval_config


def test_class_metrics_are_the_textbook_formulas():
    # rows: truth, columns: prediction
    matrix = np.array([[8, 2, 0], [1, 6, 3], [0, 0, 10]])
    metrics = class_metrics_from_confusion(matrix, ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(24 / 30)
    a, b, c = (metrics["per_class"][k] for k in "abc")
    assert a["precision"] == pytest.approx(8 / 9) and a["recall"] == pytest.approx(0.8) and a["support"] == 10
    assert b["precision"] == pytest.approx(0.75) and b["recall"] == pytest.approx(0.6)
    assert c["precision"] == pytest.approx(10 / 13) and c["recall"] == 1.0
    f1 = [2 * p * r / (p + r) for p, r in [(8 / 9, 0.8), (0.75, 0.6), (10 / 13, 1.0)]]
    assert metrics["macro_f1"] == pytest.approx(np.mean(f1))


def test_absent_classes_do_not_count_in_macro_f1():
    metrics = class_metrics_from_confusion(np.array([[5, 0, 0], [0, 5, 0], [0, 0, 0]]), ["a", "b", "c"])
    assert metrics["macro_f1"] == 1.0 and metrics["per_class"]["c"]["support"] == 0


def test_confusion_matrix_from_tfma_plot():
    plot = {"multiClassConfusionMatrixAtThresholds": {"matrices": [{"threshold": 0.0, "entries": [
        {"actualClassId": 0, "predictedClassId": 0, "numWeightedExamples": 7.0},
        {"actualClassId": 1, "predictedClassId": 0, "numWeightedExamples": 2.0},
        {"actualClassId": 1, "predictedClassId": 1, "numWeightedExamples": 5.0},
    ]}]}}
    np.testing.assert_array_equal(confusion_matrix_from_plot(plot, 2), [[7, 0], [2, 5]])


def test_eval_config_gates_every_defect_class_and_stage():
    gate = GateConfig(class_names=("Center", "Scratch", "none"), min_defect_recall=0.99, max_false_alarm_rate=0.1)
    config = build_eval_config(gate)
    recall = next(m for spec in config.metrics_specs for m in spec.metrics if DEFECT_RECALL in m.config)
    (per_slice,) = recall.per_slice_thresholds
    gated = [dict(s.feature_values) or list(s.feature_keys) for s in per_slice.slicing_specs]
    assert gated == [[], {"label": "Center"}, {"label": "Scratch"}, ["stage"]]
    assert per_slice.threshold.value_threshold.lower_bound.value == 0.99
    false_alarms = next(m for spec in config.metrics_specs for m in spec.metrics if FALSE_ALARM_RATE in m.config)
    assert false_alarms.per_slice_thresholds[0].threshold.value_threshold.upper_bound.value == 0.1
    # Every gated slice must also be computed, or TFMA fails validation as "missing slice".
    computed = {s.SerializeToString() for s in config.slicing_specs}
    assert all(s.SerializeToString() in computed for s in per_slice.slicing_specs)


def test_gate_config_errors():
    with pytest.raises(ValueError, match="normal_class 'none' must be one of class_names"):
        GateConfig(class_names=("a", "b"))
    with pytest.raises(ValueError, match=r"min_defect_recall must be in \[0, 1\]"):
        GateConfig(class_names=("a", "none"), min_defect_recall=1.5)
